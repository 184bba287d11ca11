"""Train a video backbone as a snippet classifier on trimmed snippets of annotated videos.

Used by the built-in benchmark (`rgbtad.synthetic.generate`, `rgbtad demo`): a small backbone
(e.g. ``tsm_tiny``) is trained from scratch on this CPU, for RGB frames or for a motion
modality, and its weights are then given to feature extraction
(`rgbtad.features.extract.extract_features(..., weights=...)`).

**Snippets are those of feature extraction.** Videos are decoded with the same reader, frame
rate and size (`rgbtad.video.decode.VideoReader`); a snippet is ``snippet_frames``
consecutive frames of the resampled video; the model input is built exactly as extraction
builds it:

- ``rgb``: frames on [0, 1], normalized with the backbone's ``input_mean`` / ``input_std``;
- ``flow``: the flows between consecutive frames of the whole video
  (`rgbtad.motion.flow.motion_chunks`, quantized with ``flow_bound``; or read from a folder
  written by `rgbtad motion` with ``flow_dir``), the ``snippet_frames - 1`` flows of the
  snippet with the last one repeated (`rgbtad.video.sampling.pad_snippet`), as
  ``(q / 255 - input_mean) / input_std``;
- ``tg``: grey-level differences of consecutive frames / 255 / ``input_std``, ``N - 1`` per
  snippet with the last repeated.

**Labels.** A snippet covering seconds ``[a, b)`` (``a = start / fps``, ``b = (start + N) /
fps``) is labelled with an instance ``[s, e]`` when its centre lies inside the instance and
the overlap is at least half of ``min(b - a, e - s)`` (so short instances still get
snippets); it is *background* (an extra class, index ``num_classes``) when it overlaps no
instance; other snippets (on a boundary) are not used. Training snippets start at any frame;
each epoch draws ``per_class`` snippets of every class (instances chosen uniformly, then a
start within the instance) and ``background_factor * per_class`` background snippets, from a
seeded generator, so every class weighs the same whatever its number of instances.

**Model and optimization.** The backbone (`rgbtad.backbones.create_backbone`, random
initialisation) with dropout and a linear head over ``num_classes + 1`` outputs, trained
with cross-entropy, AdamW and a warm-up + cosine schedule for a fixed number of epochs
(`DEFAULT_EPOCHS` per modality unless given; deterministic per seed on CPU, no time-based
stopping). Augmentation: a random translation of the whole snippet and, for rgb / tg, a mild
random gain per colour channel. No flips or rotations: they would swap the direction classes
of the benchmark.

**Cross-modal distillation of the backbone** (``teacher=``). The RGB backbone can learn
from a frozen motion backbone trained by this function (optical flow or temporal gradient):
every training snippet also goes, un-augmented, through the teacher, and

- ``distill="decomposed"`` (Lee et al., CVPR 2023, applied at the snippet level): the pooled
  feature is split channel-wise into an appearance half and a motion half; one classifier is
  shared by both halves; the appearance half learns the labels (cross-entropy), the motion
  half learns to reproduce the teacher's class distribution through the shared classifier
  (KL at temperature ``temperature``, times its square) and, with ``mimic_weight > 0``, the
  teacher's feature through a linear regressor (FitNets; MSE; the regressor is dropped after
  training). Sharing the classifier makes the two halves hold different information instead
  of collapsing onto the labels.
- ``distill="conventional"`` (the direct, entangled baseline): the whole feature learns the
  labels and mimics the teacher's feature (MSE, same width needed) and class distribution.

The logit terms weigh ``distill_weight``, the feature terms ``mimic_weight``. This is the backbone half of the *end-to-end* reading
of Lee et al. (METHODS.md 1.2), done in two stages because a CPU cannot train a backbone
through a detector: here the snippet features learn motion from the teacher, then the
detector-level student (`rgbtad.distill`) distils the motion detector on those features.
With frozen features from a backbone that never saw the teacher, a detector-level student
can only re-weigh what the RGB features already hold, and on the built-in benchmark (classes
told apart by motion only) they hold little of it.

**Outputs.** ``out_path``: the backbone's own ``state_dict`` (the "native" checkpoint layout,
loadable with ``create_backbone(name, modality, weights=out_path)``); beside it
``<stem>.head.pt`` (the linear head) and ``<stem>.json`` (settings, per-epoch history,
validation accuracy per class and confusion matrix when ``val_subset`` is given, seconds).
All written atomically, the weights last-but-one and the JSON last: a rerun with the same
settings finds the JSON and returns at once.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rgbtad.core.errors import RgbtadError
from rgbtad.core.device import resolve_device
from rgbtad.core.precision import autocast, resolve_precision
from rgbtad.core.atomic import atomic_path, write_json
from rgbtad.motion.flow import motion_chunks
from rgbtad.video.decode import VideoReader
from rgbtad.video.sampling import pad_snippet
from rgbtad.video.snippets import SnippetSpec, normalize

log = logging.getLogger(__name__)

FORMAT = "rgbtad-clip-training-1"
BACKGROUND = "background"
#: Epochs used when `train_clip_backbone` gets ``epochs=None``: an appearance backbone learns
#: more slowly from scratch than a motion one (measured on the synthetic benchmark).
DEFAULT_EPOCHS = {"rgb": 20, "flow": 10, "tg": 10}


@dataclass
class ClipTrainingResult:
    """What `train_clip_backbone` produced (or found, when `skipped`)."""

    weights: Path
    head: Path
    summary_path: Path
    class_names: list[str]  # the action classes followed by "background"
    history: list[dict] = field(default_factory=list)
    val: dict | None = None
    seconds: float = 0.0
    skipped: bool = False


# --------------------------------------------------------------------------- labelling


def snippet_label(start: int, snippet_frames: int, fps: float, segments: list[tuple[float, float, int]],
                  background: int) -> int | None:
    """Label of the snippet of frames ``[start, start + snippet_frames)`` (module doc).

    `segments` are ``(start_s, end_s, label_id)``. Returns a label id, `background`, or None
    for a snippet on a boundary (not used).
    """
    a, b = start / fps, (start + snippet_frames) / fps
    centre = 0.5 * (a + b)
    best, best_overlap, touched = None, 0.0, False
    for s, e, label in segments:
        overlap = min(b, e) - max(a, s)
        if overlap > 0:
            touched = True
            if s <= centre <= e and overlap >= 0.5 * min(b - a, e - s) and overlap > best_overlap:
                best, best_overlap = label, overlap
    if best is not None:
        return int(best)
    return None if touched else background


# --------------------------------------------------------------------------- data


class _VideoStore:
    """Decoded frames (or flows) of a set of videos, and the model-input builder."""

    def __init__(self, snippets: SnippetSpec, mean, std):
        self.snippets = snippets
        self.modality = snippets.modality
        self.n = snippets.frames
        self.arrays: list[np.ndarray] = []   # rgb/tg: frames N x H x W x 3; flow: q (N-1) x H x W x 2
        self.num_frames: list[int] = []
        self.mean = np.asarray(mean, np.float32)
        self.std = np.asarray(std, np.float32)

    def add(self, array: np.ndarray, num_frames: int) -> int:
        self.arrays.append(array)
        self.num_frames.append(int(num_frames))
        return len(self.arrays) - 1

    def snippet(self, video: int, start: int) -> np.ndarray:
        """One snippet as float32 ``N x H x W x C``, normalized as extraction does."""
        arr, n = self.arrays[video], self.n
        if self.modality == "rgb":
            items = arr[start:start + n]
        elif self.modality == "flow":
            items = pad_snippet(arr[start:start + n - 1], n)
        else:
            frames = arr[start:start + n].astype(np.int16)
            items = pad_snippet(frames[1:] - frames[:-1], n)
        return normalize(items, self.modality, self.mean, self.std)

    def batch(self, items: list[tuple[int, int]], rng: np.random.Generator | None = None):
        """Snippets as a ``B x C x N x H x W`` tensor; with `rng`, augmented (`augment`)."""
        import torch

        snippets = [self.snippet(v, s) for v, s in items]
        if rng is not None:
            snippets = [self.augment(x, rng) for x in snippets]
        x = np.stack(snippets)  # B x N x H x W x C
        return torch.from_numpy(x).permute(0, 4, 1, 2, 3).contiguous()

    def augment(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Training augmentation that keeps every class: a random translation of the whole
        snippet (edge padding, up to 1/8 of the frame) and, for rgb / tg, a random gain per
        colour channel. No flips or rotations: they would change direction classes."""
        n, h, w, c = x.shape
        pad = max(1, min(h, w) // 8)
        dy, dx = (int(v) for v in rng.integers(-pad, pad + 1, size=2))
        if dy or dx:
            padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
            x = padded[:, pad + dy:pad + dy + h, pad + dx:pad + dx + w]
        if self.modality == "rgb":
            gain = rng.uniform(0.85, 1.15, size=c).astype(np.float32)
            bias = rng.uniform(-0.05, 0.05, size=c).astype(np.float32)
            # on [0, 1] pixels: p' = gain * p + bias, expressed on normalized values
            x = x * gain + (bias + (gain - 1) * self.mean) / self.std
        elif self.modality == "tg":
            x = x * rng.uniform(0.85, 1.15, size=c).astype(np.float32)
        return np.ascontiguousarray(x, dtype=np.float32)


def _stored_flow(flow_dir: Path, stem: str, snippets: SnippetSpec, *, width: int,
                 height: int) -> tuple[np.ndarray, int]:
    """The flow of one video written by `rgbtad motion`, and the video's frame count."""
    from rgbtad.motion.storage import stored_motion

    array_path, meta = stored_motion(flow_dir, stem, snippets, width=width, height=height)
    flow = np.load(array_path)["flow"]
    num_frames = int(meta.get("num_frames", 0))
    if len(flow) != max(num_frames - 1, 1):
        raise RgbtadError(f"{array_path}: {len(flow)} flow items for the {num_frames} frames its sidecar declares")
    return flow, num_frames


def _load_video(path: Path, store: _VideoStore, *, flow_dir) -> tuple[int, float]:
    """Decode one video (or read its stored flow) into `store`; returns (index in the store,
    frame rate)."""
    spec = store.snippets
    reader = VideoReader(path, fps=spec.fps, size=spec.size, chunk_frames=256)
    with reader:
        rate = float(reader.fps)
        if spec.modality == "flow" and flow_dir is not None:  # the frames themselves are not needed
            array, num_frames = _stored_flow(Path(flow_dir), path.stem, spec, width=reader.width,
                                             height=reader.height)
            return store.add(array, num_frames), rate
        frames = np.concatenate(list(reader), axis=0)
    if spec.modality == "flow":
        array = np.concatenate(list(motion_chunks([frames], spec.flow_method, bound=spec.flow_bound,
                                                  dis_preset=spec.dis_preset)), axis=0)
    else:
        array = frames
    return store.add(array, len(frames)), rate


def _video_path(videos_dir: Path, video_id: str) -> Path:
    for ext in (".mp4", ".avi", ".mkv", ".webm", ".mov"):
        p = videos_dir / f"{video_id}{ext}"
        if p.is_file():
            return p
    raise RgbtadError(f"{videos_dir}: no video file for {video_id!r} (looked for {video_id}.mp4 and others)")


@dataclass
class _Split:
    # per class (background last): list of (video, start)
    by_class: list[list[tuple[int, int]]]
    # per class: list of instance pools (each a list of (video, start)) for instance-uniform sampling
    pools: list[list[list[tuple[int, int]]]]


def _collect(ann, subset: str, videos_dir: Path, store: _VideoStore, *, flow_dir, start_step: int, progress: bool,
             desc: str) -> _Split:
    from tqdm import tqdm

    videos = list(ann.split(subset))
    k = len(ann.class_names)
    by_class: list[list[tuple[int, int]]] = [[] for _ in range(k + 1)]
    pools: list[list[list[tuple[int, int]]]] = [[] for _ in range(k + 1)]
    n = store.n
    for video in tqdm(videos, desc=desc, unit="video", disable=not progress, leave=False):
        index, rate = _load_video(_video_path(videos_dir, video.video_id), store, flow_dir=flow_dir)
        frames = store.num_frames[index]
        segments = [(s.start, s.end, s.label_id) for s in video.segments]
        per_instance: dict[int, list[tuple[int, int]]] = {}
        background: list[tuple[int, int]] = []
        for start in range(0, max(frames - n, 0) + 1, start_step):
            label = snippet_label(start, n, rate, segments, k)
            if label is None:
                continue
            if label == k:
                background.append((index, start))
            else:
                # the instance whose centre test matched: the longest overlap with this label
                a, b = start / rate, (start + n) / rate
                inst = max((i for i, seg in enumerate(segments) if seg[2] == label),
                           key=lambda i: min(b, segments[i][1]) - max(a, segments[i][0]))
                per_instance.setdefault(inst, []).append((index, start))
        for inst, items in per_instance.items():
            label = segments[inst][2]
            by_class[label].extend(items)
            pools[label].append(items)
        if background:
            by_class[k].extend(background)
            pools[k].append(background)
    return _Split(by_class, pools)


def _draw_epoch(rng: np.random.Generator, split: _Split, per_class: int,
                background_count: int) -> list[tuple[tuple[int, int], int]]:
    items: list[tuple[tuple[int, int], int]] = []
    k = len(split.pools) - 1
    for label, pools in enumerate(split.pools):
        if not pools:
            continue
        count = background_count if label == k else per_class
        which = rng.integers(len(pools), size=count)
        for p in which:
            pool = pools[int(p)]
            items.append((pool[int(rng.integers(len(pool)))], label))
    order = rng.permutation(len(items))
    return [items[i] for i in order]


# --------------------------------------------------------------------------- training


def _settings(**kwargs) -> dict:
    out = {"format": FORMAT}
    for key, value in kwargs.items():
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[key] = value
    return out


def train_clip_backbone(
    annotations: str | Path,
    videos_dir: str | Path,
    out_path: str | Path,
    *,
    backbone: str = "tsm_tiny",
    snippets: SnippetSpec = SnippetSpec(),
    subset: str = "train",
    val_subset: str | None = None,
    flow_dir: str | Path | None = None,
    epochs: int | None = None,
    per_class: int = 64,
    background_factor: float = 2.0,
    batch_size: int = 32,
    lr: float = 4e-3,
    weight_decay: float = 1e-4,
    dropout: float = 0.3,
    augment: bool = True,
    seed: int = 0,
    threads: int | None = None,
    device: str | None = None,
    backbone_kwargs: dict | None = None,
    teacher: str | Path | None = None,
    distill: str = "decomposed",
    distill_weight: float = 1.0,
    temperature: float = 2.0,
    mimic_weight: float = 1.0,
    bn_batches: int = 16,
    init_from: str | Path | None = None,
    precision: str = "auto",
    progress: bool = True,
) -> ClipTrainingResult:
    """Train `backbone` for `modality` as a snippet classifier on `subset`; save its weights.

    `annotations`: an annotation file (`rgbtad.data.annotations.load_annotations`); videos are
    ``<videos_dir>/<video_id>.mp4``. `snippets` must be the settings of the extraction that
    will use the weights (modality, frames, fps, size, flow settings); its stride is only the
    spacing of the validation snippets (the extraction grid).
    `threads` sets torch's CPU threads for the duration of the call. `teacher`: weights of a
    backbone trained by this function on the same snippets (its JSON beside it), frozen and
    distilled into this one as `distill` says (module doc). `init_from`: weights of a backbone
    trained by this function (same backbone, modality and options) to start from instead of a
    random initialisation; the classifier always starts afresh. `precision`: ``auto``
    (bfloat16 autocast for the forward passes where the device runs it natively,
    `rgbtad.core.precision`), ``fp32`` or ``bf16``; weights and optimizer stay float32 (bf16: 1.6x
    faster per step on a CPU with AVX512-BF16, 14x slower on one without). `bn_batches`:
    batches of training snippets over which the batch-norm statistics are recomputed after
    training (`_precise_batch_norm`; 0: keep the running averages). Returns a
    `ClipTrainingResult`; see the module doc for the files.
    """
    import torch

    from rgbtad.backbones import create_backbone
    from rgbtad.backbones.layers import channels_last_if_2d
    from rgbtad.data.annotations import load_annotations
    from rgbtad.features.extract import check_extraction_inputs

    check_extraction_inputs(snippets, batch_size=batch_size, flow_dir=flow_dir)
    modality = snippets.modality
    if epochs is None:
        epochs = DEFAULT_EPOCHS[modality]
    for name, value in (("epochs", epochs), ("per_class", per_class)):
        if int(value) < 1:
            raise RgbtadError(f"invalid {name} {value}: must be >= 1")
    if distill not in DISTILL_MODES:
        raise RgbtadError(f"unknown distill mode {distill!r}; choose from {', '.join(DISTILL_MODES)}")
    videos_dir = Path(videos_dir)
    if not videos_dir.is_dir():
        raise RgbtadError(f"{videos_dir}: video folder not found")
    out_path = Path(out_path)
    head_path = out_path.with_name(out_path.stem + ".head.pt")
    summary_path = out_path.with_suffix(".json")

    ann = load_annotations(annotations)
    class_names = list(ann.class_names) + [BACKGROUND]
    dev = resolve_device(device)
    precision = resolve_precision(precision, dev)
    settings = _settings(
        annotations=str(Path(annotations).resolve()), videos_dir=str(videos_dir.resolve()), backbone=backbone,
        subset=subset, val_subset=val_subset, **snippets.record(),
        flow_dir=None if flow_dir is None else str(Path(flow_dir).resolve()),
        epochs=int(epochs), per_class=int(per_class), background_factor=float(background_factor),
        batch_size=int(batch_size), lr=float(lr), weight_decay=float(weight_decay), dropout=float(dropout),
        bn_batches=int(bn_batches),
        augment=bool(augment), seed=int(seed), backbone_kwargs=dict(backbone_kwargs or {}), precision=precision)
    if init_from is not None:
        settings["init_from"] = str(Path(init_from).resolve())
    if teacher is not None:
        settings["teacher"] = {"weights": str(Path(teacher).resolve()), "distill": distill,
                               "distill_weight": float(distill_weight), "temperature": float(temperature),
                               "mimic_weight": float(mimic_weight)}

    if summary_path.is_file() and out_path.is_file() and head_path.is_file():
        try:
            old = json.loads(summary_path.read_text())
        except (OSError, json.JSONDecodeError):
            old = {}
        if old.get("settings") == settings:
            return ClipTrainingResult(out_path, head_path, summary_path, old.get("class_names", class_names),
                                      old.get("history", []), old.get("val"), float(old.get("seconds", 0.0)),
                                      skipped=True)
        log.info("%s: trained with other settings; training again", summary_path)

    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    began = time.perf_counter()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            net = create_backbone(backbone, modality, **dict(backbone_kwargs or {}))
            if init_from is not None:
                _load_init(net, Path(init_from), backbone=backbone, modality=modality,
                           backbone_kwargs=dict(backbone_kwargs or {}))
            decomposed = teacher is not None and distill == "decomposed"
            if decomposed and net.feature_dim % 2:
                raise RgbtadError(f"{backbone}: decomposed distillation splits the feature in halves; "
                                  f"its width {net.feature_dim} is odd")
            head = torch.nn.Linear(int(net.feature_dim) // (2 if decomposed else 1), len(class_names))
        channels_last_if_2d(net.to(dev))
        head.to(dev)
        frozen = None
        if teacher is not None:
            frozen = _Teacher.load(teacher, snippets, class_names=class_names, device=dev)
            if distill == "conventional" and frozen.net.feature_dim != net.feature_dim:
                raise RgbtadError(f"{teacher}: conventional distillation mimics the teacher's feature, "
                                  f"{frozen.net.feature_dim} wide; the student's is {net.feature_dim}")
        store = _VideoStore(snippets, net.input_mean, net.input_std)
        train_split = _collect(ann, subset, videos_dir, store, flow_dir=flow_dir, start_step=1, progress=progress,
                               desc=f"load {subset} ({modality})")
        if frozen is not None:
            frozen.load_videos(ann, subset, videos_dir, progress=progress)
        missing = [class_names[i] for i, items in enumerate(train_split.by_class) if not items]
        if len(missing) == len(class_names):
            raise RgbtadError(f"{annotations}: no usable snippets in subset {subset!r}")
        if missing:
            log.warning("no training snippets for: %s", ", ".join(missing))
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 7]))
        aug_rng = np.random.default_rng(np.random.SeedSequence([int(seed), 8]))
        background_count = max(1, int(round(background_factor * per_class)))
        steps_per_epoch = math.ceil((sum(1 for p in train_split.pools[:-1] if p) * per_class
                                     + (background_count if train_split.pools[-1] else 0)) / batch_size)
        total_steps = steps_per_epoch * int(epochs)
        params = list(net.parameters()) + list(head.parameters())
        adapter = None
        if decomposed and float(mimic_weight) > 0:
            # FitNets-style regressor from the motion half to the teacher's feature; dropped after training
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(seed) + 2)
                adapter = torch.nn.Linear(head.in_features, int(frozen.net.feature_dim)).to(dev)
            params += list(adapter.parameters())
        optimizer = torch.optim.AdamW(params, lr=float(lr), weight_decay=float(weight_decay))
        warmup = max(1, total_steps // 20)

        def lr_at(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
        drop = torch.nn.Dropout(float(dropout))
        history: list[dict] = []
        from tqdm import tqdm

        bar = tqdm(total=total_steps, desc=f"train {backbone}/{modality}", unit="step", disable=not progress)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed) + 1)
            for epoch in range(int(epochs)):
                net.train()
                head.train()
                drop.train()
                items = _draw_epoch(rng, train_split, int(per_class), background_count)
                loss_sum, correct, seen = 0.0, 0, 0
                for i in range(0, len(items), int(batch_size)):
                    chunk = items[i:i + int(batch_size)]
                    x = store.batch([it for it, _ in chunk], aug_rng if augment else None).to(dev)
                    y = torch.tensor([label for _, label in chunk], dtype=torch.long, device=dev)
                    with autocast(precision, dev):
                        features = net(x)
                        if frozen is None:
                            logits = head(drop(features))
                            loss = torch.nn.functional.cross_entropy(logits, y)
                        else:
                            t_features, t_logits = frozen([it for it, _ in chunk])
                            logits, kd, mimic = _distill_losses(distill, features, head, drop, adapter, t_features,
                                                                t_logits, float(temperature))
                            loss = (torch.nn.functional.cross_entropy(logits, y) + float(distill_weight) * kd
                                    + float(mimic_weight) * mimic)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    scheduler.step()
                    loss_sum += float(loss.detach()) * len(chunk)
                    correct += int((logits.argmax(1) == y).sum())
                    seen += len(chunk)
                    bar.update(1)
                    bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.2f}")
                history.append({"epoch": epoch + 1, "loss": round(loss_sum / max(seen, 1), 5),
                                "train_accuracy": round(correct / max(seen, 1), 5)})
        bar.close()
        if int(bn_batches) > 0:
            _precise_batch_norm(net, store, _draw_epoch(rng, train_split, int(per_class), background_count),
                                batches=int(bn_batches), batch_size=int(batch_size), device=dev, precision=precision)
        train_seconds = time.perf_counter() - began
        net.eval()
        head.eval()
        val = None
        if val_subset is not None:
            val_store = _VideoStore(snippets, net.input_mean, net.input_std)
            val_split = _collect(ann, val_subset, videos_dir, val_store, flow_dir=flow_dir, start_step=snippets.stride,
                                 progress=progress, desc=f"load {val_subset} ({modality})")
            if decomposed:
                half = head.in_features
                branches = {"appearance": lambda f: head(f[:, :half]), "motion": lambda f: head(f[:, half:])}
                reports = evaluate_snippets(net, {"fused": _fused(branches), **branches}, val_store, val_split,
                                            class_names, batch_size=64, device=dev, precision=precision)
                val = reports["fused"]
                val["branches"] = {name: reports[name]["balanced_accuracy"] for name in branches}
            else:
                val = evaluate_snippets(net, {"head": head}, val_store, val_split, class_names, batch_size=64,
                                        device=dev, precision=precision)["head"]
        net.cpu()
        head.cpu()
        with atomic_path(head_path, suffix=".tmp.pt") as tmp:
            torch.save(head.state_dict(), tmp)
        with atomic_path(out_path, suffix=".tmp.pt") as tmp:
            torch.save(net.state_dict(), tmp)
    finally:
        if threads:
            torch.set_num_threads(old_threads)
    seconds = time.perf_counter() - began
    summary = {"format": FORMAT, "settings": settings, "class_names": class_names,
               "train_snippets_available": {class_names[i]: len(v) for i, v in enumerate(train_split.by_class)},
               "history": history, "val": val, "seconds": round(seconds, 2),
               "train_seconds": round(train_seconds, 2), "weights": out_path.name, "head": head_path.name}
    write_json(summary_path, summary)
    return ClipTrainingResult(out_path, head_path, summary_path, class_names, history, val, seconds)


def _precise_batch_norm(net, store: _VideoStore, items: list, *, batches: int, batch_size: int, device,
                        precision: str) -> None:
    """Replace the batch norms' running statistics by their average over `batches` batches
    of training snippets (un-augmented) under the final weights ("precise BN", as
    detectron2's PreciseBN hook). The running averages of training follow weights that
    changed under them; after a short training (the quick demo's flow backbone: 48 steps)
    they were so stale that the network predicted background for every snippet in eval mode
    while it classified 69 % right with batch statistics."""
    import torch

    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms or not items:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    net.train()
    with torch.no_grad(), autocast(precision, device):
        for i in range(0, min(len(items), batches * batch_size), batch_size):
            net(store.batch([it for it, _ in items[i:i + batch_size]]).to(device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    net.eval()


def evaluate_snippets(net, heads: dict, store: _VideoStore, split: _Split, class_names: list[str], *,
                      batch_size: int = 64, device=None, precision: str = "fp32") -> dict[str, dict]:
    """Accuracy of every classifier in `heads` (name -> callable from features to logits) on
    every labelled snippet of `split`, from one forward pass of `net` per snippet: overall,
    class-balanced, per class, and the confusion matrix (rows: truth, columns: prediction).
    `precision`: ``fp32`` or ``bf16`` (resolved, `rgbtad.core.precision`), as in training."""
    import torch

    items = [(it, label) for label, lst in enumerate(split.by_class) for it in lst]
    k = len(class_names)
    confusions = {name: np.zeros((k, k), dtype=np.int64) for name in heads}
    with torch.inference_mode(), autocast(precision, device if device is not None else "cpu"):
        for i in range(0, len(items), batch_size):
            chunk = items[i:i + batch_size]
            x = store.batch([it for it, _ in chunk])
            if device is not None:
                x = x.to(device)
            features = net(x)
            labels = np.array([label for _, label in chunk])
            for name, head in heads.items():
                np.add.at(confusions[name], (labels, head(features).argmax(1).cpu().numpy()), 1)
    return {name: _accuracy_report(confusion, class_names) for name, confusion in confusions.items()}


def _accuracy_report(confusion: np.ndarray, class_names: list[str]) -> dict:
    totals = confusion.sum(1)
    per_class = {class_names[i]: (round(float(confusion[i, i] / totals[i]), 4) if totals[i] else None)
                 for i in range(len(class_names))}
    present = [v for v in per_class.values() if v is not None]
    return {
        "snippets": int(totals.sum()),
        "accuracy": round(float(np.trace(confusion) / max(totals.sum(), 1)), 4),
        "balanced_accuracy": round(float(np.mean(present)), 4) if present else None,
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }


# --------------------------------------------------------------------------- distillation

DISTILL_MODES = ("decomposed", "conventional")


class _Teacher:
    """A frozen backbone + classifier trained by `train_clip_backbone`, with its own snippets."""

    def __init__(self, weights: Path, summary: dict, net, head, store: _VideoStore):
        self.weights, self.summary, self.net, self.head, self.store = weights, summary, net, head, store

    @classmethod
    def load(cls, weights, snippets: SnippetSpec, *, class_names: list[str], device) -> "_Teacher":
        import torch

        from rgbtad.backbones import create_backbone
        from rgbtad.backbones.layers import channels_last_if_2d
        from rgbtad.core.torchio import load_torch_file

        weights = Path(weights)
        summary = load_clip_summary(weights)
        s = summary.get("settings", {})
        mine = {k: v for k, v in snippets.record().items() if k in ("snippet_frames", "fps", "size")}
        diff = [f"{k} {s.get(k)!r} (student {v!r})" for k, v in mine.items() if s.get(k) != v]
        if diff:
            raise RgbtadError(f"{weights}: teacher trained on other snippets: {', '.join(diff)}")
        if summary.get("class_names") != class_names:
            raise RgbtadError(f"{weights}: teacher trained on other classes than the student's annotations")
        net = create_backbone(s["backbone"], s["modality"], weights=str(weights), **s.get("backbone_kwargs", {}))
        head_path = weights.with_name(summary.get("head", weights.stem + ".head.pt"))
        head = torch.nn.Linear(int(net.feature_dim), len(class_names))
        try:
            head.load_state_dict(load_torch_file(head_path, "teacher classifier"))
        except (OSError, RuntimeError) as err:
            raise RgbtadError(f"{head_path}: cannot load the teacher's classifier ({err})") from None
        for module in (net, head):
            module.to(device).eval().requires_grad_(False)
        channels_last_if_2d(net)
        store = _VideoStore(SnippetSpec.from_record(s, str(weights)), net.input_mean, net.input_std)
        return cls(weights, summary, net, head, store)

    def load_videos(self, ann, subset: str, videos_dir: Path, *, progress: bool) -> None:
        """Decode the teacher's input for the videos of `subset`, in the student's order."""
        from tqdm import tqdm

        s = self.summary["settings"]
        for video in tqdm(list(ann.split(subset)), desc=f"load {subset} (teacher, {s['modality']})",
                          unit="video", disable=not progress, leave=False):
            _load_video(_video_path(videos_dir, video.video_id), self.store, flow_dir=s.get("flow_dir"))

    def __call__(self, items: list[tuple[int, int]]):
        import torch

        with torch.no_grad():
            x = self.store.batch(items).to(next(self.head.parameters()).device)
            features = self.net(x)
            return features, self.head(features)


def _distill_losses(mode: str, features, head, drop, adapter, t_features, t_logits, temperature: float):
    """(student logits for the labels, logit KD loss, feature mimic loss) of one batch; see the
    module doc. `adapter` maps the decomposed motion half to the teacher's width (None: no mimic)."""
    import torch.nn.functional as F

    def kl(student_logits):
        t = temperature
        return F.kl_div(F.log_softmax(student_logits / t, 1), F.softmax(t_logits / t, 1),
                        reduction="batchmean") * t * t

    if mode == "decomposed":
        half = head.in_features
        motion = features[:, half:]
        mimic = F.mse_loss(adapter(motion), t_features) if adapter is not None else features.new_zeros(())
        return head(drop(features[:, :half])), kl(head(motion)), mimic
    logits = head(drop(features))
    return logits, kl(logits), F.mse_loss(features, t_features)


def _fused(branches: dict):
    """Classifier of a decomposed backbone at evaluation: the branches' log-probabilities summed."""
    import torch.nn.functional as F

    return lambda f: sum(F.log_softmax(classify(f), 1) for classify in branches.values())


def _load_init(net, weights: Path, *, backbone: str, modality: str, backbone_kwargs: dict) -> None:
    """Start `net` from a backbone trained by `train_clip_backbone` with the same architecture."""
    from rgbtad.core.torchio import load_torch_file

    s = load_clip_summary(weights).get("settings", {})
    mine = {"backbone": backbone, "modality": modality, "backbone_kwargs": backbone_kwargs}
    diff = [f"{k} {s.get(k)!r} (this training {v!r})" for k, v in mine.items() if s.get(k) != v]
    if diff:
        raise RgbtadError(f"{weights}: cannot start from it, other architecture: {', '.join(diff)}")
    try:
        net.load_state_dict(load_torch_file(weights, "backbone weights"))
    except (OSError, RuntimeError) as err:
        raise RgbtadError(f"{weights}: cannot load the initial weights ({err})") from None


def load_clip_summary(path: str | Path) -> dict[str, Any]:
    """The JSON summary written beside trained weights (give the weights or the JSON)."""
    path = Path(path)
    path = path if path.suffix == ".json" else path.with_suffix(".json")
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise RgbtadError(f"{path}: not a readable clip-training summary ({err})") from None
