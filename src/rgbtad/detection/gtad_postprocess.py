"""G-TAD's inference: sliding windows over a video, proposals from the map, soft-NMS.

Release counterparts: the windows of ``VideoDataSet._get_data`` (``gtad_lib/dataset.py``),
the enumeration of ``gtad_inference.py`` and ``_gen_detection_video`` / ``Soft_NMS`` of
``gtad_postprocess.py`` (frostinassiky/gtad, THUMOS14 branch ``master``):

* windows: ``T`` snippets every ``T / 2``, as many as fit, plus one ending at the video's end
  when more than ``tail_min`` snippets are left over (the release: ``T / skip`` snippets,
  51 for THUMOS, a tail that it leaves undetected; 0 here by default so every snippet is
  seen); a video shorter than ``T`` is one zero-padded window;
* proposals: every anchor (duration ``d``, start ``j``) with ``j + d + 1 < T`` is the segment
  ``[j, j + d + 1]`` + the window's start on the snippet grid, scored ``cls * reg`` (the
  map's two channels). The ActivityNet branch (``anet``) also keeps only anchors whose start
  and end snippets are boundary peaks (a local maximum or above half the window's maximum of
  the start / end probabilities): ``boundary_filter``. Proposals at least
  ``max_proposal_frames`` video frames long score 0 (the release's THUMOS "trick", 300);
* soft-NMS (BSN's): repeatedly keep the best, multiply every other proposal that overlaps
  it by ``exp(-IoU^2 / nms_threshold)`` (0.46), stop at ``num_proposals`` (200) kept, at a
  best score of 0, or at the last proposal (which is not kept); once per window, then once
  over the windows' results merged, then the best ``num_proposals``.

The result is class-agnostic (label 0, the release's proposal scores); the release turns
each proposal into detections of the video's top-2 UntrimmedNet classes after this step
(``score * class score``), the shared ``test.ext_score_file`` step of rgbtad. With ``K`` class
channels every class is proposed and suppressed on its own (``cls_k * reg``, up to
``num_proposals`` each), label ``k``, all classes then sorted by score together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["ProposalConfig", "boundary_peaks", "release_soft_nms", "video_proposals", "window_proposals",
           "window_starts"]


@dataclass(frozen=True)
class ProposalConfig:
    """Post-processing settings (the release's THUMOS14 values by default)."""

    nms_threshold: float = 0.46
    num_proposals: int = 200
    max_proposal_frames: float = 300.0  # <= 0: no limit
    boundary_filter: bool = False
    tail_min: int = 0


def window_starts(num_snippets: int, length: int, tail_min: int = 0) -> list[int]:
    """The first snippet of every window of `length` over a video of `num_snippets`."""
    stride = length // 2
    if num_snippets <= length:
        return [0]
    starts = list(range(0, num_snippets - length + 1, stride))
    if num_snippets - starts[-1] - length > tail_min:
        starts.append(num_snippets - length)
    return starts


def boundary_peaks(scores: torch.Tensor) -> torch.Tensor:
    """``T`` bool: the first snippet, the last, and every local maximum or score above half
    the maximum in between (the ActivityNet branch's BMN filter)."""
    peaks = torch.zeros_like(scores, dtype=torch.bool)
    peaks[0] = peaks[-1] = True
    inner = scores[1:-1]
    local = (inner > scores[2:]) & (inner > scores[:-2])
    peaks[1:-1] = local | (inner > 0.5 * scores.max())
    return peaks


def window_proposals(proposal_map: torch.Tensor, start: torch.Tensor, end: torch.Tensor, offset: int,
                     channel: int, feat_stride: float, cfg: ProposalConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Segments (``N x 2``, grid positions, float64) and scores of one window's anchors,
    duration-major as the release enumerates them; `channel` the classification channel."""
    _, durations, length = proposal_map.shape
    d = torch.arange(durations, device=proposal_map.device).view(-1, 1).expand(durations, length)
    j = torch.arange(length, device=proposal_map.device).view(1, -1).expand(durations, length)
    keep = j + d + 1 < length
    if cfg.boundary_filter:
        ends = (j + d + 1).clamp(max=length - 1)
        keep = keep & boundary_peaks(start)[j] & boundary_peaks(end)[ends]
    scores = proposal_map[channel].double() * proposal_map[0].double()
    segs = torch.stack((j, j + d + 1), dim=-1).double() + offset
    segs, scores = segs[keep], scores[keep]
    if cfg.max_proposal_frames > 0:
        scores = torch.where((segs[:, 1] - segs[:, 0]) * feat_stride >= cfg.max_proposal_frames,
                             torch.zeros_like(scores), scores)
    return segs, scores


def release_soft_nms(segs: torch.Tensor, scores: torch.Tensor, threshold: float,
                     num_proposals: int) -> tuple[torch.Tensor, torch.Tensor]:
    """BSN's soft-NMS as G-TAD runs it (module doc), in float64 NumPy (a loop of small steps);
    ties go to the earlier proposal in a stable descending sort of the scores."""
    order = torch.sort(scores, descending=True, stable=True)[1]
    starts, ends = (segs[order].double().cpu().numpy().T.copy() if len(order)
                    else (np.zeros(0), np.zeros(0)))
    current = scores[order].double().cpu().numpy().copy()
    kept, kept_scores = [], []
    alive = len(current)
    while alive > 1 and len(kept) < num_proposals:
        best = int(np.argmax(current))
        if current[best] <= 0:
            break
        s, e = starts[best], ends[best]
        inter = np.minimum(ends, e)
        inter -= np.maximum(starts, s)
        overlapping = inter > 0  # disjoint or touching proposals do not decay
        overlapping[best] = False
        union = np.maximum(ends[overlapping], e) - np.minimum(starts[overlapping], s)
        iou = inter[overlapping] / union
        kept.append(best)
        kept_scores.append(current[best])
        current[overlapping] *= np.exp(-np.square(iou) / threshold)
        current[best] = -np.inf  # removed from the list
        alive -= 1
    index = order[torch.as_tensor(kept, dtype=torch.long)]
    return segs[index].double().reshape(-1, 2), torch.tensor(kept_scores, dtype=torch.float64)


def video_proposals(maps: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor, offsets: list[int],
                    feat_stride: float, cfg: ProposalConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One video's proposals from its windows (``W x (1 + K) x D x T`` maps, ``W x T`` start
    / end): segments on the grid, scores, labels; best first."""
    num_classes = maps.shape[1] - 1
    all_segs, all_scores, all_labels = [], [], []
    for label in range(num_classes):
        merged_segs, merged_scores = [], []
        for window, offset in enumerate(offsets):
            segs, scores = window_proposals(maps[window], starts[window], ends[window], offset, 1 + label,
                                            feat_stride, cfg)
            segs, scores = release_soft_nms(segs, scores, cfg.nms_threshold, cfg.num_proposals)
            merged_segs.append(segs)
            merged_scores.append(scores)
        segs, scores = torch.cat(merged_segs), torch.cat(merged_scores)
        if len(scores) > 1:
            segs, scores = release_soft_nms(segs, scores, cfg.nms_threshold, cfg.num_proposals)
        order = torch.sort(scores, descending=True, stable=True)[1][:cfg.num_proposals]
        all_segs.append(segs[order])
        all_scores.append(scores[order])
        all_labels.append(torch.full((len(order),), label, dtype=torch.long))
    segs, scores, labels = torch.cat(all_segs), torch.cat(all_scores), torch.cat(all_labels)
    order = torch.sort(scores, descending=True, stable=True)[1]
    return segs[order], scores[order], labels[order]
