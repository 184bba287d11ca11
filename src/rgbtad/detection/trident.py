"""TriDet's Trident head: boundary bins and the expected offsets they decode to.

Release counterpart: ``TriDet.decode_offset`` and the bin layout of ``TriDet.losses`` /
``inference_single_video`` (``libs/modeling/meta_archs.py`` of dingfengshi/TriDet). Three
branches per pyramid level: a start-boundary and an end-boundary head (per-class logits
``B x T x K``, on detached features) and a centre-offset head (``B x T x 2 (num_bins + 1)``,
ReLU of a per-level scale, the start half first). The offset of point ``t`` for class
``c`` is an expectation over ``num_bins + 1`` neighbours::

    P_start(j) = softmax_j(start[t - (num_bins - j), c] + centre_start[t, j])
    offset_start = sum_j P_start(j) * (num_bins - j)        (steps of the level's stride)
    P_end(j)   = softmax_j(end[t + j, c] + centre_end[t, j])
    offset_end = sum_j P_end(j) * j

Neighbours outside the sequence count as logit 0 (the release zero-pads). The release
blanks both distributions where the *end* one is NaN; so does `expected_offsets`. The bins
are laid out with the release's shapes and strides (``unfold`` of the zero-padded
``K x T`` logits is its ``as_strided`` view), in its training layout (all levels
concatenated, ``B x T x K x bins``) and its inference layout (one video, one level,
``K x T x bins``), so that softmax and matmul round as they do there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from rgbtad.detection.protocol import DetectorOutput

__all__ = ["TriDetOutput", "batch_class_offsets", "best_class_offsets", "boundary_bins", "expected_offsets",
           "video_class_offsets"]


@dataclass
class TriDetOutput(DetectorOutput):
    """A `DetectorOutput` with the Trident head's raw branches (lists over levels).

    ``offsets`` (``B x T_l x 2``, what the protocol promises) are the expected offsets of
    each point's highest-scoring class; ``losses`` and ``postprocess`` decode every class
    from the raw branches instead, as the release does: ``center_offsets``
    ``B x T_l x 2 (num_bins + 1)`` (the regression head's output; ``B x T_l x 2`` offsets
    without the Trident head), ``start_logits`` / ``end_logits`` ``B x T_l x K`` (empty
    without the Trident head).
    """

    center_offsets: list[torch.Tensor] = field(default_factory=list)
    start_logits: list[torch.Tensor] = field(default_factory=list)
    end_logits: list[torch.Tensor] = field(default_factory=list)
    num_bins: int = 0


def boundary_bins(logits: torch.Tensor, num_bins: int, start: bool) -> torch.Tensor:
    """``... x T x K`` boundary logits -> ``... x K x T x (num_bins + 1)`` neighbour logits:
    for the start branch bin ``j`` holds step ``t - num_bins + j``, for the end branch step
    ``t + j`` (0 outside the sequence)."""
    padded = F.pad(logits.transpose(-1, -2), (num_bins, 0) if start else (0, num_bins))
    if torch.onnx.is_in_onnx_export():  # unfold of a dynamic length does not export: the same bins, sliced
        length = logits.shape[-2]
        return torch.stack([padded[..., j:j + length] for j in range(num_bins + 1)], dim=-1)
    return padded.unfold(-1, num_bins + 1, 1)


def expected_offsets(start_bins: torch.Tensor, end_bins: torch.Tensor, center_start: torch.Tensor,
                     center_end: torch.Tensor) -> torch.Tensor:
    """The expected (start, end) offsets ``... x 2`` of bin logits plus (broadcast) centre
    logits, in steps of the level's stride."""
    start_prob = torch.softmax(start_bins + center_start, dim=-1)
    end_prob = torch.softmax(end_bins + center_end, dim=-1)
    num = start_prob.shape[-1]
    start_steps = torch.arange(num - 1, -1, -1, device=start_prob.device, dtype=start_prob.dtype).unsqueeze(-1)
    end_steps = torch.arange(num, device=end_prob.device, dtype=end_prob.dtype).unsqueeze(-1)
    start_prob = start_prob.masked_fill(torch.isnan(end_prob), 0)
    end_prob = end_prob.masked_fill(torch.isnan(end_prob), 0)
    return torch.cat([torch.matmul(start_prob, start_steps), torch.matmul(end_prob, end_steps)], dim=-1)


def batch_class_offsets(center_offsets: list[torch.Tensor], start_logits: list[torch.Tensor],
                        end_logits: list[torch.Tensor], num_bins: int) -> torch.Tensor:
    """Every class's offsets for the given levels concatenated: ``B x sum T_l x K x 2``
    (the release's training layout)."""
    start = [boundary_bins(x, num_bins, True).permute(0, 2, 1, 3) for x in start_logits]
    end = [boundary_bins(x, num_bins, False).permute(0, 2, 1, 3) for x in end_logits]
    center = torch.cat(center_offsets, dim=1)
    center = center.view(center.shape[:2] + (2, -1))
    start_bins = torch.cat(start, dim=1)
    end_bins = torch.cat(end, dim=1)
    return expected_offsets(start_bins, end_bins, center[:, :, :1, :], center[:, :, 1:, :])


def video_class_offsets(center_offsets: torch.Tensor, start_logits: torch.Tensor, end_logits: torch.Tensor,
                        num_bins: int) -> torch.Tensor:
    """Every class's offsets of one video on one level, ``T x K x 2``, from ``T x 2 (num_bins
    + 1)`` centre and ``T x K`` boundary logits (the release's inference layout)."""
    start_bins = boundary_bins(start_logits, num_bins, True)
    end_bins = boundary_bins(end_logits, num_bins, False)
    center = center_offsets.view(center_offsets.shape[0], 2, -1)
    decoded = expected_offsets(start_bins, end_bins, center[None, :, 0, :], center[None, :, 1, :])
    return decoded.transpose(0, 1)


def best_class_offsets(class_offsets: torch.Tensor, cls_logits: torch.Tensor) -> torch.Tensor:
    """``B x T x K x 2`` per-class offsets -> ``B x T x 2``: those of each point's
    highest-scoring class."""
    best = cls_logits.argmax(dim=-1)[..., None, None].expand(*cls_logits.shape[:-1], 1, 2)
    return class_offsets.gather(-2, best).squeeze(-2)
