"""Trimmed snippets of annotated videos for snippet-backbone training: labels, decoding,
sampling and augmentation.

**Snippets are those of feature extraction.** Videos are decoded with the same reader, frame
rate and size (`rgbtad.video.decode.VideoReader`); a snippet is ``frames`` consecutive
frames of the resampled video; the model input is built exactly as extraction builds it
(`rgbtad.video.snippets.normalize`):

- ``rgb``: frames on [0, 1], normalized with the backbone's ``input_mean`` / ``input_std``;
- ``flow``: the flows between consecutive frames of the whole video
  (`rgbtad.motion.flow.motion_chunks`, quantized with ``flow_bound``; or read from a folder
  written by `rgbtad motion` with ``flow_dir``), the ``frames - 1`` flows of the snippet with
  the last one repeated (`rgbtad.video.sampling.pad_snippet`), as
  ``(q / 255 - input_mean) / input_std``;
- ``tg``: grey-level differences of consecutive frames / 255 / ``input_std``, ``N - 1`` per
  snippet with the last repeated.

**Labels** (`snippet_label`). A snippet covering seconds ``[a, b)`` (``a = start / fps``,
``b = (start + N) / fps``) is labelled with an instance ``[s, e]`` when its centre lies
inside the instance and the overlap is at least half of ``min(b - a, e - s)`` (so short
instances still get snippets); it is *background* (an extra class, index ``num_classes``)
when it overlaps no instance; other snippets (on a boundary) are not used.

**Sampling** (`draw_epoch`). Training snippets start at any frame; each epoch draws
``per_class`` snippets of every class (instances chosen uniformly, then a start within the
instance) and ``background_count`` background snippets from a seeded generator, so every
class weighs the same whatever its number of instances.

**Augmentation** (`SnippetStore.augment`): a random translation of the whole snippet and,
for rgb / tg, a mild random gain per colour channel. No flips or rotations: they would swap
the direction classes of the built-in benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rgbtad.core.errors import RgbtadError
from rgbtad.motion.flow import motion_chunks
from rgbtad.video.decode import VideoReader
from rgbtad.video.sampling import pad_snippet
from rgbtad.video.snippets import SnippetSpec, normalize

BACKGROUND = "background"
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov")

Item = tuple[int, int]  # (video index in the store, first frame)


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


class SnippetStore:
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

    def batch(self, items: list[Item], rng: np.random.Generator | None = None):
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


def load_video(path: Path, store: SnippetStore, *, flow_dir: str | Path | None) -> tuple[int, float]:
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


def video_path(videos_dir: Path, video_id: str) -> Path:
    for ext in VIDEO_EXTENSIONS:
        p = videos_dir / f"{video_id}{ext}"
        if p.is_file():
            return p
    raise RgbtadError(f"{videos_dir}: no video file for {video_id!r} (looked for {video_id}.mp4 and others)")


def load_subset(ann, subset: str, videos_dir: Path, store: SnippetStore, *, flow_dir, desc: str,
                progress: bool) -> list[float]:
    """Decode the videos of `subset` into `store`, in the annotations' order; their frame rates."""
    from tqdm import tqdm

    videos = list(ann.split(subset))
    return [load_video(video_path(videos_dir, v.video_id), store, flow_dir=flow_dir)[1]
            for v in tqdm(videos, desc=desc, unit="video", disable=not progress, leave=False)]


@dataclass
class SnippetSplit:
    """The labelled snippets of one subset."""

    #: per class (background last): every (video, start)
    by_class: list[list[Item]]
    #: per class: the instance pools (each a list of (video, start)) for instance-uniform sampling
    pools: list[list[list[Item]]]

    def items(self) -> list[tuple[Item, int]]:
        """Every labelled snippet with its label, class by class."""
        return [(it, label) for label, lst in enumerate(self.by_class) for it in lst]


def collect_snippets(ann, subset: str, videos_dir: Path, store: SnippetStore, *, flow_dir, start_step: int,
                     progress: bool, desc: str) -> SnippetSplit:
    """Decode the videos of `subset` into `store` and label their snippets that start every
    `start_step` frames (`snippet_label`)."""
    videos = list(ann.split(subset))
    rates = load_subset(ann, subset, videos_dir, store, flow_dir=flow_dir, desc=desc, progress=progress)
    k = len(ann.class_names)
    split = SnippetSplit([[] for _ in range(k + 1)], [[] for _ in range(k + 1)])
    first = len(store.arrays) - len(videos)
    for offset, (video, rate) in enumerate(zip(videos, rates)):
        segments = [(s.start, s.end, s.label_id) for s in video.segments]
        _label_video(split, first + offset, store.num_frames[first + offset], rate, segments, store.n,
                     start_step, k)
    return split


def _label_video(split: SnippetSplit, index: int, frames: int, rate: float, segments: list, n: int,
                 start_step: int, k: int) -> None:
    per_instance: dict[int, list[Item]] = {}
    background: list[Item] = []
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
        split.by_class[label].extend(items)
        split.pools[label].append(items)
    if background:
        split.by_class[k].extend(background)
        split.pools[k].append(background)


def epoch_size(split: SnippetSplit, per_class: int, background_count: int) -> int:
    """Snippets `draw_epoch` draws."""
    k = len(split.pools) - 1
    return sum(per_class for p in split.pools[:k] if p) + (background_count if split.pools[k] else 0)


def draw_epoch(rng: np.random.Generator, split: SnippetSplit, per_class: int,
               background_count: int) -> list[tuple[Item, int]]:
    """One epoch's training snippets with their labels, shuffled (module doc)."""
    items: list[tuple[Item, int]] = []
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
