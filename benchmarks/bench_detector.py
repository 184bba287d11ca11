"""Speed and memory of the ActionFormer detector at full THUMOS14 size.

Prints medians over repeats of
* one training step (forward + losses + backward + grad clipping + AdamW step) on a
  THUMOS14-shaped batch (2 x 2048 x 2304 features, a few actions per video), with the
  process's peak resident memory (``getrusage`` high-water mark) before and after training;
* inference per video (2304 steps): forward, and post-processing (decode + soft-NMS).

The weights are random, so every candidate scores about the classifier prior (0.01) and
post-processing handles its worst case: the full top-k of every level.

    python benchmarks/bench_detector.py [--config configs/thumos_i3d.yaml] [--repeats 5]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

from rgbtad.config import load_config
from rgbtad.detection import build_detector


def _rss_mib() -> float:
    """Current resident memory (Linux /proc), MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def _batch(cfg, batch: int, length: int, gen: torch.Generator):
    feats = torch.randn(batch, cfg.data.input_dim, length, generator=gen)
    masks = torch.ones(batch, length, dtype=torch.bool)
    segments, labels = [], []
    for _ in range(batch):
        starts = torch.randint(0, length - 200, (6,), generator=gen).float()
        lengths = torch.randint(8, 200, (6,), generator=gen).float()
        segments.append(torch.stack([starts, starts + lengths], 1))
        labels.append(torch.randint(0, cfg.model.num_classes, (6,), generator=gen))
    return feats, masks, segments, labels


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "configs" / "thumos_i3d.yaml"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--length", type=int, default=2304)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = load_config(args.config)
    num_classes = cfg.model.num_classes or 20
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)

    model = build_detector(cfg, num_classes).to(device)
    params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.param_groups(cfg.train.weight_decay), lr=cfg.train.learning_rate)
    feats, masks, segments, labels = _batch(cfg, args.batch, args.length, gen)
    feats, masks = feats.to(device), masks.to(device)
    segments = [s.to(device) for s in segments]
    labels = [lab.to(device) for lab in labels]
    print(f"device {device}, torch threads {torch.get_num_threads()}, {params / 1e6:.2f} M parameters, "
          f"input {args.batch} x {cfg.data.input_dim} x {args.length}")

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    # ---------------------------------------------------------------- training step
    model.train()
    rss_before = _rss_mib()
    peak_before = _peak_rss_mib()
    step_times = []
    for repeat in range(args.repeats + 1):  # the first step is a warm-up
        sync()
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        out = model(feats, masks)
        losses = model.losses(out, segments, labels)
        losses["final_loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip_grad_l2norm)
        optimizer.step()
        sync()
        if repeat > 0:
            step_times.append(time.perf_counter() - start)
    peak_after = _peak_rss_mib()
    print(f"training step (forward + backward + AdamW): median {statistics.median(step_times):.3f} s "
          f"over {len(step_times)} (min {min(step_times):.3f}, max {max(step_times):.3f})")
    print(f"memory: resident {rss_before:.0f} MiB before training (model + data), peak "
          f"{peak_after:.0f} MiB during training steps (+{peak_after - max(peak_before, rss_before):.0f} MiB "
          f"for activations, gradients and optimizer state)")
    if device.type == "cuda":
        print(f"CUDA peak allocated: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")

    # ---------------------------------------------------------------- inference per video
    model.eval()
    video = feats[:1]
    video_mask = masks[:1]
    meta = {"video_id": "bench", "fps": 30.0, "duration": args.length * 4 / 30.0,
            "feat_stride": cfg.data.feat_stride, "feat_num_frames": cfg.data.num_frames}
    forward_times, post_times, counts = [], [], []
    with torch.no_grad():
        for repeat in range(args.repeats + 1):
            sync()
            start = time.perf_counter()
            out = model(video, video_mask)
            sync()
            middle = time.perf_counter()
            dets = model.postprocess(out, [meta])
            end = time.perf_counter()
            if repeat > 0:
                forward_times.append(middle - start)
                post_times.append(end - middle)
                counts.append(len(dets[0]["scores"]))
    fwd, post = statistics.median(forward_times), statistics.median(post_times)
    print(f"inference per video ({args.length} steps): forward {fwd:.3f} s + post-processing "
          f"{post:.3f} s = {fwd + post:.3f} s (median of {len(forward_times)}; "
          f"{counts[0]} detections kept)")


if __name__ == "__main__":
    main()
