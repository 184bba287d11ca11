"""Decoding and non-maximum suppression, in PyTorch and NumPy (no compiled code).

Replicates, step by step, ``PtTransformer.inference_single_video`` / ``postprocessing``
(``libs/modeling/meta_archs.py``), ``batched_nms`` / ``seg_voting`` (``libs/utils/nms.py``)
and the C++ kernels ``nms_1d_cpu`` / ``softnms_1d_cpu`` (``libs/utils/csrc/nms_cpu.cpp``) of
the ActionFormer release, including their orderings and tie rules:

* per level: ``sigmoid(logit) * mask``; keep scores ``> pre_nms_thresh``; sort descending
  with ``torch.sort`` (not stable, as the release) and keep the first ``pre_nms_topk``;
  decode ``(t - l s, t + r s)``; keep segments longer than ``duration_thresh`` (grid units);
* NMS inputs are float32; segment "areas" are ``end - start + 1e-6``;
* Gaussian soft-NMS (``softnms_cpu``): repeatedly take the first maximum (strict ``<`` scan),
  swap it to the front, multiply every later score by ``exp(-iou^2 / sigma)``, and drop a
  score ``< min_score`` by moving the last candidate into its slot (so array order, which
  decides ties, follows the C++ exactly). The maximum itself is never compared with
  ``min_score``;
* hard NMS (``nms_cpu``): drop scores ``<= min_score`` first, order with ``torch.sort``,
  suppress IoU ``>= iou_threshold``;
* multiclass: soft/hard NMS per class in ``torch.unique`` order, each capped at
  ``max_seg_num``; class-agnostic: one NMS, then segment voting (IoU ``>= voting_thresh``,
  weights score x IoU, over all pre-NMS candidates) when ``voting_thresh > 0`` (TriDet's
  release weights by the score alone: ``NMSConfig.voting_iou_weight`` False);
* finally sort by score (``torch.sort``) and keep ``max_seg_num``; with ``nms_method ==
  'none'`` nothing is sorted or capped (as the release);
* grid -> seconds: ``(x * feat_stride + 0.5 * num_frames) / fps``, then values ``<= 0``
  become 0 and values ``>= duration`` become ``duration``.

One departure: a segment that starts at or after the video's end is clipped to the empty
``[duration, duration]``, which the release writes out; it can never match anything, the
evaluator refuses empty segments, so such detections are dropped here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rgbtad.core.timebase import SnippetGrid
from rgbtad.data.detections import Detections

__all__ = [
    "NMSConfig",
    "batched_nms",
    "decode_video",
    "clip_to_video",
    "hard_nms_1d",
    "postprocess_video",
    "segment_voting",
    "soft_nms_1d",
]

AREA_EPS = np.float32(1e-6)


@dataclass
class NMSConfig:
    pre_nms_thresh: float = 0.001
    pre_nms_topk: int = 2000
    duration_thresh: float = 0.05
    nms_method: str = "soft"
    iou_threshold: float = 0.1
    min_score: float = 0.001
    max_seg_num: int = 200
    multiclass: bool = True
    sigma: float = 0.5
    voting_thresh: float = 0.75
    voting_iou_weight: bool = True  # segment voting weights: score x IoU (ActionFormer), else the score (TriDet)

    @classmethod
    def from_config(cls, test, *, voting_iou_weight: bool = True) -> "NMSConfig":
        """From the ``test`` section of an ``rgbtad.config.Config``."""
        return cls(pre_nms_thresh=test.pre_nms_thresh, pre_nms_topk=test.pre_nms_topk,
                   duration_thresh=test.duration_thresh, nms_method=test.nms_method,
                   iou_threshold=test.iou_threshold, min_score=test.min_score, max_seg_num=test.max_seg_num,
                   multiclass=test.multiclass_nms, sigma=test.nms_sigma, voting_thresh=test.voting_thresh,
                   voting_iou_weight=voting_iou_weight)


# ------------------------------------------------------------------------------ decoding

@torch.no_grad()
def decode_video(cls_logits: list[torch.Tensor], offsets: list[torch.Tensor],
                 masks: list[torch.Tensor], points: list[torch.Tensor], cfg: NMSConfig):
    """Candidates of one video from per-level ``T_l x K`` logits, ``T_l x 2`` offsets (or
    ``T_l x K x 2``: per class, TriDet), ``T_l`` masks and ``T_l x 4`` points: (segments
    ``N x 2`` grid units, scores, labels)."""
    segs_all, scores_all, labels_all = [], [], []
    for logits, offs, mask, pts in zip(cls_logits, offsets, masks, points):
        num_classes = logits.shape[-1]
        probs = (logits.sigmoid() * mask.unsqueeze(-1)).flatten()
        keep = probs > cfg.pre_nms_thresh
        probs = probs[keep]
        flat_index = keep.nonzero(as_tuple=True)[0]
        num_top = min(cfg.pre_nms_topk, flat_index.size(0))
        probs, order = probs.sort(descending=True)
        probs = probs[:num_top].clone()
        flat_index = flat_index[order[:num_top]].clone()
        point_index = torch.div(flat_index, num_classes, rounding_mode="floor")
        labels = torch.fmod(flat_index, num_classes)
        offs = offs[point_index, labels] if offs.dim() == 3 else offs[point_index]
        pts = pts[point_index]
        left = pts[:, 0] - offs[:, 0] * pts[:, 3]
        right = pts[:, 0] + offs[:, 1] * pts[:, 3]
        segs = torch.stack((left, right), -1)
        long_enough = (right - left) > cfg.duration_thresh
        segs_all.append(segs[long_enough])
        scores_all.append(probs[long_enough])
        labels_all.append(labels[long_enough])
    return torch.cat(segs_all), torch.cat(scores_all), torch.cat(labels_all)


def clip_to_video(segs: torch.Tensor, duration: float) -> torch.Tensor:
    """Segments in seconds clipped to ``[0, duration]`` (release arithmetic, in place)."""
    if segs.shape[0] == 0:
        return segs
    segs[segs <= 0.0] *= 0.0
    over = segs >= duration
    segs[over] = segs[over] * 0.0 + duration
    return segs


# ------------------------------------------------------------------------------ NMS kernels

def soft_nms_1d(segs: np.ndarray, scores: np.ndarray, sigma: float, min_score: float):
    """Gaussian soft-NMS over float32 ``N x 2`` segments, as ``softnms_1d_cpu`` (method 2).

    Returns ``(index, kept_segs, kept_scores)``: the original index of every kept segment in
    selection order, its segment and its decayed score.
    """
    x1 = np.ascontiguousarray(segs[:, 0], dtype=np.float32).copy()
    x2 = np.ascontiguousarray(segs[:, 1], dtype=np.float32).copy()
    sc = np.asarray(scores, dtype=np.float32).copy()
    areas = (x2 - x1) + AREA_EPS
    idx = np.arange(len(sc), dtype=np.int64)
    sigma32 = np.float32(sigma)
    min32 = np.float32(min_score)
    n = len(sc)
    out_segs = np.empty((n, 2), dtype=np.float32)
    out_scores = np.empty(n, dtype=np.float32)
    i = 0
    while i < n:
        best = i + int(np.argmax(sc[i:n]))  # first occurrence of the maximum
        if best != i:
            for arr in (x1, x2, sc, areas, idx):
                arr[i], arr[best] = arr[best], arr[i]
        out_segs[i, 0], out_segs[i, 1], out_scores[i] = x1[i], x2[i], sc[i]
        if i + 1 < n:
            rest = slice(i + 1, n)
            inter = np.maximum(np.float32(0.0), np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
            iou = inter / ((areas[i] + areas[rest]) - inter)
            sc[rest] *= np.exp(-(iou * iou) / sigma32)
            n = _drop_low_scores(i + 1, n, min32, x1, x2, sc, areas, idx)
        i += 1
    return idx[:n].copy(), out_segs[:n].copy(), out_scores[:n].copy()


def _drop_low_scores(start: int, n: int, min_score: np.float32, *arrays) -> int:
    """Remove entries ``< min_score`` from ``[start, n)`` the C++ way: scanning upwards, a
    dropped entry is replaced by the current last one (which is then examined in its place).
    Returns the new length."""
    sc = arrays[2]
    low = (np.flatnonzero(sc[start:n] < min_score) + start).tolist()
    if not low:
        return n
    low_set = set(low)
    lo = 0
    while lo < len(low):
        pos = low[lo]
        if pos >= n:
            break
        last = n - 1
        if pos != last:
            for arr in arrays:
                arr[pos] = arr[last]
        n -= 1
        if last in low_set and last != pos:
            # the entry moved into `pos` is low as well: examine `pos` again
            low_set.discard(last)
            if low and low[-1] == last:
                low.pop()
            continue
        lo += 1
    return n


def hard_nms_1d(segs: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS as ``nms_1d_cpu``: indices of the kept segments in descending score order."""
    if segs.numel() == 0:
        return torch.empty(0, dtype=torch.long)
    order = torch.sort(scores, 0, descending=True)[1].numpy()
    x1 = segs[:, 0].contiguous().numpy().astype(np.float32)
    x2 = segs[:, 1].contiguous().numpy().astype(np.float32)
    areas = (x2 - x1) + AREA_EPS
    sx1, sx2, sarea = x1[order], x2[order], areas[order]
    keep = np.ones(len(order), dtype=bool)
    for pos in range(len(order)):
        if not keep[pos]:
            continue
        later = slice(pos + 1, len(order))
        overlap = np.minimum(sx2[pos], sx2[later]) - np.maximum(sx1[pos], sx1[later])
        inter = np.maximum(np.float32(0.0), overlap)
        iou = inter / ((sarea[pos] + sarea[later]) - inter)
        keep[later] &= ~(iou >= np.float32(iou_threshold))
    return torch.from_numpy(order[keep].copy())


def segment_voting(nms_segs: torch.Tensor, all_segs: torch.Tensor, all_scores: torch.Tensor,
                   iou_threshold: float, iou_weight: bool = True) -> torch.Tensor:
    """Refine each kept segment as the (score x IoU)-weighted mean of every candidate whose
    IoU with it is ``>= iou_threshold`` (release: ``seg_voting``); without `iou_weight`
    score-weighted (TriDet's release)."""
    n_nms, n_all = nms_segs.shape[0], all_segs.shape[0]
    a = nms_segs[:, None].expand(n_nms, n_all, 2)
    b = all_segs[None, :].expand(n_nms, n_all, 2)
    left = torch.maximum(a[:, :, 0], b[:, :, 0])
    right = torch.minimum(a[:, :, 1], b[:, :, 1])
    inter = (right - left).clamp(min=0)
    iou = inter / ((a[:, :, 1] - a[:, :, 0]) + (b[:, :, 1] - b[:, :, 0]) - inter)
    weights = (iou >= iou_threshold).to(all_scores.dtype) * all_scores[None, :]
    if iou_weight:
        weights = weights * iou
    weights = weights / torch.sum(weights, dim=1, keepdim=True)
    return weights @ all_segs


def _soft_nms_op(segs, scores, labels, cfg: NMSConfig):
    index, kept_segs, kept_scores = soft_nms_1d(segs.numpy(), scores.numpy(), cfg.sigma, cfg.min_score)
    count = min(len(index), cfg.max_seg_num) if cfg.max_seg_num > 0 else len(index)
    return (torch.from_numpy(kept_segs[:count]), torch.from_numpy(kept_scores[:count]),
            labels[torch.from_numpy(index)][:count])


def _hard_nms_op(segs, scores, labels, cfg: NMSConfig):
    if cfg.min_score > 0:
        valid = scores > cfg.min_score
        segs, scores, labels = segs[valid], scores[valid], labels[valid]
    index = hard_nms_1d(segs, scores, cfg.iou_threshold)
    if cfg.max_seg_num > 0:
        index = index[:min(cfg.max_seg_num, len(index))]
    return segs[index], scores[index], labels[index]


def batched_nms(segs: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, cfg: NMSConfig):
    """NMS over all candidates of a video (CPU tensors); returns (segs, scores, labels)."""
    segs = segs.float().cpu()
    scores = scores.float().cpu()
    labels = labels.cpu()
    if segs.shape[0] == 0:
        return torch.zeros(0, 2), torch.zeros(0), torch.zeros(0, dtype=labels.dtype)
    op = _soft_nms_op if cfg.nms_method == "soft" else _hard_nms_op
    if cfg.multiclass:
        parts = []
        for cls in torch.unique(labels):
            members = torch.where(labels == cls)[0]
            parts.append(op(segs[members], scores[members], labels[members], cfg))
        new_segs = torch.cat([p[0] for p in parts])
        new_scores = torch.cat([p[1] for p in parts])
        new_labels = torch.cat([p[2] for p in parts])
    else:
        new_segs, new_scores, new_labels = op(segs, scores, labels, cfg)
        if cfg.voting_thresh > 0:
            new_segs = segment_voting(new_segs, segs, scores, cfg.voting_thresh, cfg.voting_iou_weight)
    order = new_scores.sort(descending=True)[1]
    count = min(cfg.max_seg_num, new_segs.shape[0])
    order = order[:count]
    return new_segs[order], new_scores[order], new_labels[order]


@torch.no_grad()
def postprocess_video(cls_logits, offsets, masks, points, meta: dict, cfg: NMSConfig) -> Detections:
    """The detections of one video, in seconds."""
    segs, scores, labels = decode_video(cls_logits, offsets, masks, points, cfg)
    segs, scores, labels = segs.detach().cpu(), scores.detach().cpu(), labels.detach().cpu()
    if cfg.nms_method != "none":
        segs, scores, labels = batched_nms(segs, scores, labels, cfg)
    # seconds in float64 (the release stays in float32, about 1e-6 s away) so that a segment
    # clipped to the video's end equals the duration exactly
    snippets = SnippetGrid(_number(meta["feat_stride"]), _number(meta["feat_num_frames"]), _number(meta["fps"]))
    segs = clip_to_video(snippets.to_seconds(segs.double()), _number(meta["duration"]))
    inside = segs[:, 1] > segs[:, 0]  # clipping empties a segment that lies past the video's end
    segs, scores, labels = segs[inside], scores[inside], labels[inside]
    return Detections(meta["video_id"], segs.numpy().reshape(-1, 2), scores.numpy().reshape(-1),
                      labels.numpy().astype(np.int64).reshape(-1))


def _number(value):
    if isinstance(value, torch.Tensor):
        return value.item()
    if isinstance(value, np.generic):
        return value.item()
    return value
