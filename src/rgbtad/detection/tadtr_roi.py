"""TadTR's actionness branch: 1-D RoI alignment of the encoder memory and the regressor on it.

Release counterpart: ``ROIAlign`` (``models/ops/roi_align``, a CUDA-only ``Align1D`` op, here
in plain PyTorch) and the ``with_act_reg`` part of ``TadTR`` (``models/tadtr.py``) of
xlliu7/TadTR. Each last-layer segment ``(c, w)`` is widened to ``(c, 1.5 w)``, mapped to
``[0, T]`` (``T`` the memory's length), clamped, detached, and pooled into ``bins`` (16)
bins; bin ``p`` averages ``ceil(roi / bins)`` samples at ``start + (p + (i + .5) / n) bin``
(rois shorter than 1 step count as 1), each a linear interpolation with the kernel's edge
rules (0 outside ``[-1, T]``, the first step below 0, the last step from ``T - 1`` on). The
pooled ``D x bins`` features (channel-major, as the kernel lays them out) go through
``Linear -> ReLU -> Linear -> ReLU -> Linear -> sigmoid``: the predicted IoU of the segment
with the ground truth, which multiplies the class scores at inference.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ROI_SCALE", "ActionnessHead", "roi_align_1d", "segments_to_rois"]

ROI_SCALE = 1.5  # the release widens each segment by half before pooling


def segments_to_rois(segments: torch.Tensor, length: int, scale: float = ROI_SCALE) -> torch.Tensor:
    """``B x Q x 2`` normalised (centre, width) -> ``B x Q x 2`` (start, end) in steps of a
    `length`-step sequence, widened by `scale`, clamped to ``[0, length]`` and detached (the
    release stops the gradient here)."""
    centre, width = segments[..., :1], segments[..., 1:] * scale
    rois = torch.cat((centre - width / 2, centre + width / 2), dim=-1) * length
    return rois.clamp(min=0, max=length).detach()


def roi_align_1d(feats: torch.Tensor, rois: torch.Tensor, bins: int) -> torch.Tensor:
    """``B x C x T`` `feats` pooled over ``B x Q x 2`` `rois` (start, end in steps):
    ``B x Q x C x bins``. The sampling is folded into a ``B x Q*bins x T`` interpolation
    matrix, so the gradient reaches the features (not the rois)."""
    batch, _, length = feats.shape
    num = rois.shape[1]
    start, end = rois[..., 0].float(), rois[..., 1].float()
    roi_len = (end - start).clamp(min=1.0)
    bin_size = roi_len / bins
    counts = torch.ceil(roi_len / bins).clamp(min=1)  # samples per bin (sampling_ratio 0: adaptive)
    most = int(counts.max().item()) if counts.numel() else 1
    sample = torch.arange(most, dtype=torch.float32, device=feats.device)
    pos = torch.arange(bins, dtype=torch.float32, device=feats.device)
    t = (start[..., None, None] + pos[:, None] * bin_size[..., None, None]
         + (sample + 0.5) * (bin_size / counts)[..., None, None])  # B x Q x bins x most
    used = (sample < counts[..., None, None]) & (t >= -1.0) & (t <= length)
    t = t.clamp(min=0)
    low = torch.floor(t).long()
    at_end = low >= length - 1
    low = torch.where(at_end, torch.full_like(low, length - 1), low)
    high = torch.where(at_end, low, low + 1)
    frac = torch.where(at_end, torch.zeros_like(t), t - low.float())
    share = used.float() / counts[..., None, None]
    weights = feats.new_zeros(batch, num * bins, length)
    weights.scatter_add_(2, low.view(batch, num * bins, most), ((1 - frac) * share).view(batch, num * bins, most))
    weights.scatter_add_(2, high.view(batch, num * bins, most), (frac * share).view(batch, num * bins, most))
    pooled = torch.bmm(weights, feats.transpose(1, 2))  # B x Q*bins x C
    return pooled.view(batch, num, bins, -1).transpose(2, 3)


class ActionnessHead(nn.Module):
    """RoI-aligned memory -> actionness in ``(0, 1)`` per query (key ``actionness_pred``)."""

    def __init__(self, dim: int, bins: int = 16):
        super().__init__()
        self.bins = bins
        self.actionness_pred = nn.Sequential(
            nn.Linear(bins * dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, dim), nn.ReLU(inplace=True),
            nn.Linear(dim, 1), nn.Sigmoid())

    def forward(self, memory: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
        """`memory` ``B x D x T``, last-layer `segments` ``B x Q x 2``: ``B x Q x 1``."""
        rois = segments_to_rois(segments, memory.shape[-1])
        pooled = roi_align_1d(memory, rois, self.bins)
        return self.actionness_pred(pooled.flatten(2))
