"""Feature datasets for training and inference, item for item like ActionFormer's.

`FeatureDataset` turns an `AnnotationSet` (already narrowed to one split) and a
`FeatureStore` into items::

    {"video_id": str,
     "feats": FloatTensor C x T,
     "teacher_feats": FloatTensor C' x T,  # distillation only: a `PairedFeatureStore`'s teacher half
     "segments": FloatTensor N x 2,   # feature-grid units: (sec * fps - 0.5 * num_frames) / feat_stride
     "labels": LongTensor N,           # index into `class_names`
     "fps": float, "duration": float,
     "feat_stride": effective stride in frames (x downsample_rate, or recomputed when resized),
     "feat_num_frames": effective frames per snippet}

Behaviour follows the reference (happyharrycn/actionformer_release, libs/datasets/thumos14.py,
anet.py and data_utils.truncate_feats):

* fps is `data.default_fps` when set (it names the frame rate the features were extracted
  at, as in the reference, where it overrides the annotation), else the annotation's fps,
  else an error naming the video.
* `downsample_rate` keeps every k-th snippet and multiplies the stride by k.
* ``teacher_feats`` (`FEATURE_KEYS`) are resized, truncated and cropped exactly as ``feats``.
* `force_upsampling` linearly resizes every sequence to `max_seq_len` steps
  (align_corners=False) with ``feat_stride = ((T - 1) * feat_stride + num_frames) / max_seq_len``
  and ``feat_num_frames = feat_stride`` (the reference's ActivityNet "case 2").
* Training: videos without segments are left out; each item is randomly truncated to
  `max_seq_len` keeping at least one action that overlaps the window by >= `trunc_thresh`
  (up to 200 tries; the window is widened by half a snippet, ``0.5 * num_frames / stride``,
  on each side when measuring overlap and clipping, as in the reference's latest
  `truncate_feats`); a video no longer than `max_seq_len` is instead cropped to a random
  length in ``[round(crop_ratio[0] * T), round(crop_ratio[1] * T)]`` the same way.
  Kept segments are clipped to the (widened) window and shifted by its start.
* ActivityNet-style clean-up (`anet_style`, on by default with `force_upsampling`):
  duplicate annotations (same label, both ends within 1e-3 s) are dropped, and in training
  segments starting past the features are dropped, segments less than `trunc_thresh`
  inside the features are dropped, and the rest are clipped to the features' end.

Randomness comes from a numpy Generator seeded by ``(seed, epoch, index)``: the same seed and
epoch give the same items in any process or worker, and `set_epoch` moves to the next epoch,
so training is deterministic and resumable.

Differences from the reference, all deliberate: videos without annotations give empty
``segments``/``labels`` tensors instead of None; labels are looked up by class name in the
`class_names` passed in; a missing feature file is an error (``missing_features="skip"``
skips it with a warning, as the reference does silently).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Sequence

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset

from rgbtad.config import DataConfig
from rgbtad.core.errors import RgbtadError
from rgbtad.core.timebase import SnippetGrid
from rgbtad.data.annotations import AnnotationSet
from rgbtad.features.paired import PairedFeatureStore
from rgbtad.features.store import FeatureStore

__all__ = ["FEATURE_KEYS", "FeatureDataset", "MAX_TRUNCATION_TRIALS", "detector_input", "item_rng",
           "truncate_item"]

log = logging.getLogger(__name__)

MAX_TRUNCATION_TRIALS = 200
DUPLICATE_TOLERANCE = 1e-3  # seconds
LONG_FEATURES_FACTOR = 2.0  # features spanning more than this times the video's duration: a warning
FEATURE_KEYS = ("feats", "teacher_feats")  # per-snippet item tensors (C x T), all cut alike


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The random generator of one item: a pure function of (seed, epoch, index)."""
    mask = (1 << 64) - 1
    return np.random.default_rng([int(seed) & mask, int(epoch) & mask, int(index) & mask])


def truncate_item(item: dict[str, Any], max_seq_len: int, trunc_thresh: float, offset: float,
                  crop_ratio: Sequence[float] | None, rng: np.random.Generator,
                  max_num_trials: int = MAX_TRUNCATION_TRIALS) -> dict[str, Any]:
    """Random truncation of a training item (the reference's `truncate_feats`).

    Returns `item` itself when nothing is cut, else a new dict with ``feats[:, st:ed]`` (and
    the same steps of the item's other `FEATURE_KEYS`), the segments overlapping
    ``[st - offset, ed + offset]`` by >= `trunc_thresh` of their length (clipped to it and shifted by ``-st``) and their labels. If no window in
    `max_num_trials` tries keeps an action, the last window is used as it is.
    """
    feats = item["feats"]
    segments = item["segments"]
    feat_len = feats.shape[1]
    if feat_len <= max_seq_len:
        if crop_ratio is None:
            return item
        low = max(round(crop_ratio[0] * feat_len), 1)
        high = min(round(crop_ratio[1] * feat_len), feat_len)
        max_seq_len = int(rng.integers(low, high + 1))
        if max_seq_len == feat_len:
            return item

    seg_len = (segments[:, 1] - segments[:, 0]).abs()
    for _ in range(max_num_trials):
        st = int(rng.integers(0, feat_len - max_seq_len + 1))
        ed = st + max_seq_len
        left = torch.clamp(segments[:, 0], min=st - offset)
        right = torch.clamp(segments[:, 1], max=ed + offset)
        inter = (right - left).clamp(min=0)
        keep = (inter / seg_len) >= trunc_thresh  # 0/0 (zero-length segment) is NaN: dropped
        if bool(keep.any()):
            break

    out = dict(item)
    for key in FEATURE_KEYS:
        if key in item:
            out[key] = item[key][:, st:ed].clone()
    out["segments"] = torch.stack((left[keep], right[keep]), dim=1) - st
    out["labels"] = item["labels"][keep].clone()
    return out


def detector_input(feats: np.ndarray, cfg: DataConfig) -> tuple[torch.Tensor, float, float]:
    """``T x C`` float32 features -> (``C x T'`` tensor, feat_stride, num_frames) as the
    detector sees them: `downsample_rate` or `force_upsampling` applied (module doc)."""
    if cfg.force_upsampling:
        feat_stride = float((feats.shape[0] - 1) * cfg.feat_stride + cfg.num_frames) / cfg.max_seq_len
        num_frames: float = feat_stride
    else:
        if cfg.downsample_rate > 1:
            feats = feats[:: cfg.downsample_rate]
        feat_stride = cfg.feat_stride * cfg.downsample_rate
        num_frames = cfg.num_frames
    tensor = torch.from_numpy(np.ascontiguousarray(feats.T))  # C x T
    if cfg.force_upsampling and tensor.shape[1] != cfg.max_seq_len:
        tensor = F.interpolate(tensor[None], size=cfg.max_seq_len, mode="linear",
                               align_corners=False)[0]
    return tensor, feat_stride, num_frames


def _drop_duplicates(segments: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep: list[int] = []
    for i in range(len(labels)):
        duplicate = any(
            labels[j] == labels[i]
            and abs(segments[j, 0] - segments[i, 0]) <= DUPLICATE_TOLERANCE
            and abs(segments[j, 1] - segments[i, 1]) <= DUPLICATE_TOLERANCE
            for j in keep
        )
        if not duplicate:
            keep.append(i)
    return segments[keep], labels[keep]


class FeatureDataset(Dataset):
    """Items of one split, as described in the module docstring.

    `annotations` should already be one split (``AnnotationSet.split``). `class_names`
    fixes the label ids (the model's classes); `class_agnostic=True` maps every label to 0
    (ActivityNet proposals). `seed` and `set_epoch` drive the training randomness.
    """

    def __init__(self, annotations: AnnotationSet, store: FeatureStore | PairedFeatureStore,
                 data_cfg: DataConfig, *, training: bool, class_names: Sequence[str], seed: int = 0,
                 class_agnostic: bool = False, anet_style: bool | None = None,
                 missing_features: str = "error"):
        self.store = store
        self.cfg = data_cfg
        self.training = bool(training)
        self.class_names = list(class_names)
        self.seed = int(seed)
        self.epoch = 0
        self.class_agnostic = bool(class_agnostic)
        self.anet_style = bool(data_cfg.force_upsampling if anet_style is None else anet_style)
        self.source = annotations.source
        self._check_config(data_cfg)
        if missing_features not in ("error", "skip"):
            raise ValueError("missing_features must be 'error' or 'skip'")
        if not self.class_names and not self.class_agnostic:
            raise RgbtadError(f"{self.source}: no class names given")

        label_ids = {name: i for i, name in enumerate(self.class_names)}
        self.entries: list[dict[str, Any]] = []
        missing: list[str] = []
        for video in annotations.videos.values():
            if self.training and not video.segments:
                continue
            if not store.exists(video.video_id):
                missing.append(video.video_id)
                continue
            fps = data_cfg.default_fps if data_cfg.default_fps is not None else video.fps
            if fps is None:
                raise RgbtadError(
                    f"{self.source}: video '{video.video_id}' has no fps; set data.default_fps"
                )
            if fps <= 0:
                raise RgbtadError(f"config key 'data.default_fps' must be positive, got {fps}")
            labels = []
            for seg in video.segments:
                if self.class_agnostic:
                    labels.append(0)
                elif seg.label in label_ids:
                    labels.append(label_ids[seg.label])
                else:
                    raise RgbtadError(
                        f"{self.source}: video '{video.video_id}': label {seg.label!r} is not one "
                        f"of the model's {len(self.class_names)} classes"
                    )
            segments = np.array([[s.start, s.end] for s in video.segments], dtype=np.float64).reshape(-1, 2)
            labels_arr = np.array(labels, dtype=np.int64)
            if self.anet_style:
                segments, labels_arr = _drop_duplicates(segments, labels_arr)
            self.entries.append({
                "video_id": video.video_id, "fps": float(fps), "duration": float(video.duration),
                "segments": segments, "labels": labels_arr,
            })
        if missing:
            shown = ", ".join(str(store.path(v)) for v in missing[:3])
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            message = (f"{store.root}: {len(missing)} video(s) of {self.source} have no feature "
                       f"file: {shown}{more}")
            if missing_features == "error":
                raise RgbtadError(message)
            warnings.warn(message + " (skipped)", stacklevel=2)

    @staticmethod
    def _check_config(cfg: DataConfig) -> None:
        if cfg.downsample_rate < 1:
            raise RgbtadError(f"config key 'data.downsample_rate' must be >= 1, got {cfg.downsample_rate}")
        if cfg.force_upsampling and cfg.downsample_rate != 1:
            raise RgbtadError(
                "config keys 'data.force_upsampling' and 'data.downsample_rate' do not combine "
                "(resized features ignore downsampling)"
            )
        if cfg.crop_ratio is not None:
            low, high = cfg.crop_ratio
            if not 0 < low <= high:
                raise RgbtadError(f"config key 'data.crop_ratio' must satisfy 0 < low <= high, got {list(cfg.crop_ratio)}")
        if not 0 <= cfg.trunc_thresh <= 1:
            raise RgbtadError(f"config key 'data.trunc_thresh' must be in [0, 1], got {cfg.trunc_thresh}")

    def warn_long_features(self) -> None:
        """One warning when features run far past the annotated end of their videos.

        Snippet ``T - 1`` ends at ``((T - 1) * feat_stride + num_frames) / fps`` seconds; more
        than `LONG_FEATURES_FACTOR` times the duration means wrong snippet settings or fps, or
        features of other videos, and detections there are clipped to zero length at the end.
        Reads only the .npy headers (`FeatureStore.num_snippets`).
        """
        long = []
        for entry in self.entries:
            count = self.store.num_snippets(entry["video_id"])
            if count is None or entry["duration"] <= 0:
                continue
            span = ((count - 1) * self.cfg.feat_stride + self.cfg.num_frames) / entry["fps"]
            if span > LONG_FEATURES_FACTOR * entry["duration"]:
                long.append((entry, count, span))
        if long:
            entry, count, span = long[0]
            others = f" (and {len(long) - 1} more videos)" if len(long) > 1 else ""
            log.warning("%s: %d snippets span %.1f s (data.feat_stride %d, data.num_frames %d, %g fps) but video "
                        "'%s' lasts %.1f s%s; check the snippet settings and the fps",
                        self.store.path(entry["video_id"]), count, span, self.cfg.feat_stride, self.cfg.num_frames,
                        entry["fps"], entry["video_id"], entry["duration"], others)

    # -- sampling state ---------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random truncations `__getitem__` returns."""
        self.epoch = int(epoch)

    @property
    def video_ids(self) -> list[str]:
        return [entry["video_id"] for entry in self.entries]

    @property
    def num_classes(self) -> int:
        return 1 if self.class_agnostic else len(self.class_names)

    def __len__(self) -> int:
        return len(self.entries)

    # -- items ------------------------------------------------------------------------------
    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self.entries):
            raise IndexError(index)
        entry = self.entries[index]
        cfg = self.cfg
        loaded = self.store.load(entry["video_id"])  # float32, T x C (a FeaturePair when paired)
        paired = isinstance(self.store, PairedFeatureStore)
        tensor, feat_stride, num_frames = detector_input(loaded.student if paired else loaded, cfg)

        fps = entry["fps"]
        snippets = SnippetGrid(feat_stride, num_frames, fps)
        grid = snippets.to_grid(entry["segments"])
        segments = torch.from_numpy(grid.astype(np.float32)).reshape(-1, 2)
        labels = torch.from_numpy(entry["labels"].copy())
        if self.training and self.anet_style:
            segments, labels = self._keep_inside(segments, labels, tensor.shape[1], snippets)

        item = {
            "video_id": entry["video_id"],
            "feats": tensor,
            "segments": segments,
            "labels": labels,
            "fps": fps,
            "duration": entry["duration"],
            "feat_stride": feat_stride,
            "feat_num_frames": num_frames,
        }
        if paired:
            item["teacher_feats"] = detector_input(loaded.teacher, cfg)[0]
        if self.training:
            item = truncate_item(
                item, cfg.max_seq_len, cfg.trunc_thresh, snippets.half_snippet,
                cfg.crop_ratio, item_rng(self.seed, self.epoch, index),
            )
        return item

    def _keep_inside(self, segments: torch.Tensor, labels: torch.Tensor, feat_len: int,
                     snippets: SnippetGrid) -> tuple[torch.Tensor, torch.Tensor]:
        """ActivityNet fix for videos whose features stop early (reference anet.py)."""
        vid_len = feat_len + snippets.half_snippet
        starts, ends = segments[:, 0], segments[:, 1]
        inside = (torch.clamp(ends, max=vid_len) - starts) / (ends - starts)
        keep = (starts < vid_len) & (inside >= self.cfg.trunc_thresh)
        return torch.clamp(segments[keep], max=vid_len), labels[keep]
