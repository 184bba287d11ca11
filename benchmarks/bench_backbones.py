"""Speed of feature extraction: snippets per second of each backbone, per input modality, in fp32
and with bf16 autocast. Random weights; input B x C x T x H x W with T = the backbone's
``num_frames_hint``. Prints a table (median of repeats, after one warm-up pass).

    python benchmarks/bench_backbones.py [--quick] [--device cpu|cuda] [--batch 2] [--repeats 3]
                                         [--size 224] [--backbones tsm_r18,i3d_inception]
                                         [--modalities rgb,flow,tg] [--precisions fp32,bf16]

Only the first convolution differs between modalities (3 or 2 input channels), so flow and
tg cost about what rgb costs. ``--quick`` measures rgb only for every backbone, batch 1 and two
repeats, and skips slowfast_r50 and i3d_inception in bf16 (the slowest combinations on CPU).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from rgbtad.backbones import BACKBONES, create_backbone
from rgbtad.core.precision import autocast, cpu_model, native_bf16

QUICK_SKIP = {("slowfast_r50", "bf16"), ("i3d_inception", "bf16")}


def snippets_per_second(net, modality: str, frames: int, size: int, batch: int, repeats: int,
                        device: torch.device, bf16: bool) -> tuple[float, float]:
    """(median, best) snippets/s over `repeats` timed passes."""
    channels = 2 if modality == "flow" else 3
    x = torch.randn(batch, channels, frames, size, size, device=device)

    def once() -> None:
        with torch.inference_mode(), autocast("bf16" if bf16 else "fp32", device):
            net(x)
        if device.type == "cuda":
            torch.cuda.synchronize()

    once()  # warm-up
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        once()
        rates.append(batch / (time.perf_counter() - start))
    return statistics.median(rates), max(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--backbones", default=",".join(BACKBONES))
    parser.add_argument("--modalities", default="rgb,flow,tg")
    parser.add_argument("--precisions", default="fp32,bf16")
    args = parser.parse_args()
    if args.quick:
        args.batch, args.repeats, args.modalities = 1, 2, "rgb"

    device = torch.device(args.device)
    torch.manual_seed(0)
    print(f"{cpu_model() if device.type == 'cpu' else device}, native bf16: {native_bf16(device)}")
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"{args.size}x{args.size}, median of {args.repeats} repeats after a warm-up")
    print("snippets/s as median (best); the best pass is the better guide on a shared machine")
    print(f"{'backbone':<15} {'modality':<8} {'frames':>6} {'dim':>5} {'fp32 snip/s':>16} {'bf16 snip/s':>16}")
    precisions = args.precisions.split(",")
    for name in args.backbones.split(","):
        for modality in args.modalities.split(","):
            net = create_backbone(name, modality).to(device)
            frames = max(net.num_frames_hint or 8, getattr(net, "min_frames", 1))
            cells = []
            for precision in ("fp32", "bf16"):
                if precision not in precisions or (args.quick and (name, precision) in QUICK_SKIP):
                    cells.append(f"{'skipped':>16}")
                    continue
                median, best = snippets_per_second(net, modality, frames, args.size, args.batch, args.repeats,
                                                   device, precision == "bf16")
                cells.append(f"{f'{median:.2f} ({best:.2f})':>16}")
            print(f"{name:<15} {modality:<8} {frames:>6} {net.feature_dim:>5} {cells[0]} {cells[1]}", flush=True)
            del net


if __name__ == "__main__":
    main()
