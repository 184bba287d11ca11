"""G-TAD's sub-graph of interest alignment (SGAlign) in pure PyTorch.

Every anchor of the 2-D proposal map (start ``j``, duration index ``d``: the snippets
``j .. j + d``) reads the features of its region widened by ``expand_ratio`` of its length
on each side, ``[j - r (d + 1), j + d + r (d + 1)]``, at ``resolution`` points by 1-D RoI
alignment; anchors that leave the window (``j + d >= T``) read the region ``[0, 0]``.
Release counterpart: ``GraphAlign._get_anchors`` (``gtad_lib/models.py``) and its CUDA op
``Align1D`` (``gtad_lib/Align1D_cuda_kernal.cu``), whose sampling `align_weights` writes as a
matrix: bin ``p`` of a region ``[s, e]`` (length ``h = max(e - s, 1)``) averages
``g = ratio or ceil(h / resolution)`` points ``s + p h / P + (i + 0.5) h / (P g)``, each by
linear interpolation between its two neighbouring snippets (points below -1 or above ``T``
read 0, points in ``[-1, 0]`` read snippet 0, points past ``T - 1`` read snippet ``T - 1``).

The alignment is linear in the features, so it is a sparse ``(anchors x points) x T``
matrix; the 1x1 convolution that follows it in the map head is linear too, and
`AlignedMapConv` applies the convolution's weight first (per sampling point, on the ``T``
snippets) and the sparse alignment second. That is the release's ``align -> conv`` up to
float rounding, without materialising the ``anchors x C x points`` tensor (0.5 GB per
THUMOS window of 256 snippets).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["AlignedMapConv", "align1d", "align_weights", "anchor_regions"]


def anchor_regions(length: int, max_duration: int, expand_ratio: float) -> torch.Tensor:
    """``(T * D) x 2`` float64 sampling regions, start-major (row ``j * D + d``)."""
    start = torch.arange(length, dtype=torch.float64).view(-1, 1).expand(length, max_duration)
    duration = torch.arange(max_duration, dtype=torch.float64).view(1, -1).expand(length, max_duration)
    span = (duration + 1) * expand_ratio
    regions = torch.stack((start - span, start + duration + span), dim=-1)
    regions[start + duration >= length] = 0.0
    return regions.reshape(-1, 2)


def align_weights(regions: torch.Tensor, length: int, resolution: int,
                  ratio: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The alignment as COO triplets ``(rows, cols, values)`` of an ``(R * P) x T`` matrix,
    row ``r * P + p`` the bin ``p`` of region ``r`` (`regions` ``R x 2``), in float32 as the
    release computes its sampling points."""
    regions = regions.to(torch.float32)
    start = regions[:, 0]
    height = torch.clamp(regions[:, 1] - start, min=1.0)
    bin_size = height / resolution
    grid = torch.full_like(height, float(ratio)) if ratio > 0 else torch.ceil(height / resolution)
    most = int(grid.max().item()) if grid.numel() else 1
    bins = torch.arange(resolution, dtype=torch.float32).view(1, -1, 1)
    steps = torch.arange(most, dtype=torch.float32).view(1, 1, -1)
    points = (start.view(-1, 1, 1) + bins * bin_size.view(-1, 1, 1)
              + (steps + 0.5) * bin_size.view(-1, 1, 1) / grid.view(-1, 1, 1))
    used = (steps < grid.view(-1, 1, 1)) & (points >= -1.0) & (points <= length)
    points = torch.clamp(points, min=0.0)
    low = points.to(torch.int64)
    past_end = low >= length - 1
    low = torch.where(past_end, torch.full_like(low, length - 1), low)
    points = torch.where(past_end, low.to(torch.float32), points)
    high = torch.where(past_end, low, low + 1)
    frac = points - low.to(torch.float32)
    weight = used.to(torch.float32) / grid.view(-1, 1, 1)
    rows = torch.arange(regions.shape[0] * resolution).view(-1, resolution, 1).expand_as(low)
    rows = torch.cat((rows.reshape(-1), rows.reshape(-1)))
    cols = torch.cat((low.reshape(-1), high.reshape(-1)))
    values = torch.cat(((weight * (1 - frac)).reshape(-1), (weight * frac).reshape(-1)))
    keep = values != 0
    return rows[keep], cols[keep], values[keep]


def _sparse(rows, cols, values, shape, device, dtype) -> torch.Tensor:
    index = torch.stack((rows, cols)).to(device)
    return torch.sparse_coo_tensor(index, values.to(device=device, dtype=dtype), shape,
                                   check_invariants=False).coalesce()


def align1d(x: torch.Tensor, regions: torch.Tensor, resolution: int, ratio: int = 0) -> torch.Tensor:
    """1-D RoI alignment of ``x`` (``B x C x T``) over `regions` (``R x 2``, the same for
    every video) -> ``B x R x C x P`` (the release's op, per video of the batch)."""
    batch, channels, length = x.shape
    rows, cols, values = align_weights(regions, length, resolution, ratio)
    matrix = _sparse(rows, cols, values, (regions.shape[0] * resolution, length), x.device, x.dtype)
    flat = x.permute(2, 0, 1).reshape(length, batch * channels)
    out = torch.sparse.mm(matrix, flat).view(regions.shape[0], resolution, batch, channels)
    return out.permute(2, 0, 3, 1)


class AlignedMapConv(nn.Module):
    """SGAlign + the map head's first 1x1 convolution: ``B x C x T`` snippet features (one
    per sampled source: the node features, then the context features) ->
    ``B x out_dim x D x T``. ``conv`` holds the weight as the release's ``Conv2d`` over the
    ``C * sum(P)`` aligned channels (channel ``c * sum(P) + p``: the inner points, then the
    context points, per feature channel)."""

    def __init__(self, channels: int, out_dim: int, length: int, max_duration: int,
                 resolutions: tuple[int, ...], ratio: int, expand_ratio: float):
        super().__init__()
        self.channels, self.length, self.max_duration = channels, length, max_duration
        self.resolutions = tuple(resolutions)
        self.conv = nn.Conv2d(channels * sum(self.resolutions), out_dim, kernel_size=1)
        regions = anchor_regions(length, max_duration, expand_ratio)
        for index, resolution in enumerate(self.resolutions):
            rows, cols, values = align_weights(regions, length, resolution, ratio)
            # row r * P + p of the alignment -> row r, column p * T + t of the fused product
            anchor, point = rows // resolution, rows % resolution
            fused = _sparse(anchor, point * length + cols, values,
                            (length * max_duration, resolution * length), "cpu", torch.float32)
            self.register_buffer(f"align_index_{index}", fused.indices(), persistent=False)
            self.register_buffer(f"align_values_{index}", fused.values(), persistent=False)

    def forward(self, sources: list[torch.Tensor]) -> torch.Tensor:
        if len(sources) != len(self.resolutions):
            raise ValueError(f"{len(self.resolutions)} feature sources expected, got {len(sources)}")
        # float32 under autocast too: sparse products need one dtype, and not every device's
        # sparse kernels take bfloat16
        with torch.autocast(sources[0].device.type, enabled=False):
            return self._fused([x.to(self.conv.weight.dtype) for x in sources])

    def _fused(self, sources: list[torch.Tensor]) -> torch.Tensor:
        batch = sources[0].shape[0]
        weight = self.conv.weight.view(self.conv.out_channels, self.channels, sum(self.resolutions))
        out, first = None, 0
        for index, (x, resolution) in enumerate(zip(sources, self.resolutions)):
            part = weight[:, :, first:first + resolution]
            first += resolution
            # per sampling point p: the conv's weight on every snippet, P*T x (B * out)
            projected = torch.einsum("ocp,bct->ptbo", part, x).reshape(resolution * self.length, -1)
            matrix = torch.sparse_coo_tensor(getattr(self, f"align_index_{index}"),
                                             getattr(self, f"align_values_{index}").to(x.dtype),
                                             (self.length * self.max_duration, resolution * self.length),
                                             check_invariants=False)
            term = torch.sparse.mm(matrix, projected)
            out = term if out is None else out + term
        out = out.view(self.length, self.max_duration, batch, -1) + self.conv.bias
        return out.permute(2, 3, 1, 0)

