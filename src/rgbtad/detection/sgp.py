"""The Scalable-Granularity Perception (SGP) layer and TriDet's SGP encoder.

Release counterpart: ``SGPBlock`` and ``SGPBackbone`` in ``libs/modeling/blocks.py`` /
``backbones.py`` of dingfengshi/TriDet (the projection convs of its backbone are
`rgbtad.detection.encoders.ConvEmbedding` here, as for ActionFormer). One SGP layer on
``B x C x T`` features (all convs depthwise)::

    x   <- downsample(x)                  max-pool (stride+1, stride, pad (stride+1)//2) or avg-pool + 1x1 conv
    y   =  LN(x)
    y   <- fc(y) * relu(global_fc(mean_t(y))) + (convw(y) + convkw(y)) * psi(y) + y
    out =  x * mask + scale(y)            the instant-level and window-level branches
    out <- out + scale(mlp(GroupNorm(out)))

The mean over time includes padded steps and only the skip path is masked, as in the
release; ``convkw``'s kernel is ``round((kernel_size + 1) * k)``, made odd. Modules are
created and initialised in the release's order (the five depthwise convs' weights drawn
from ``N(0, init_conv_vars)`` after creation, every conv bias zeroed by the backbone), so
that under one seed the random initialisation matches it.
"""

from __future__ import annotations

import torch
from torch import nn

from rgbtad.detection.blocks import ChannelLayerNorm, LayerScaleDropPath, downsample_mask

__all__ = ["DOWNSAMPLE_TYPES", "SGPBlock", "SGPEncoder", "window_kernel_size"]

DOWNSAMPLE_TYPES = ("max", "avg")
GROUP_NORM_GROUPS = 16  # the release's GroupNorm before the MLP


def window_kernel_size(kernel_size: int, k: float) -> int:
    """The kernel of the wider window branch: ``round((kernel_size + 1) * k)``, made odd."""
    size = round((kernel_size + 1) * k)
    return size + 1 if size % 2 == 0 else size


def _downsample(dim: int, stride: int, kind: str) -> tuple[nn.Module, int]:
    if stride == 1:
        return nn.Identity(), 1
    if kind == "max":
        return nn.MaxPool1d(stride + 1, stride=stride, padding=(stride + 1) // 2), stride
    if kind == "avg":
        pool = nn.Sequential()
        pool.add_module("pool", nn.AvgPool1d(stride, stride=stride, padding=0))
        pool.add_module("proj", nn.Conv1d(dim, dim, 1))
        return pool, stride
    raise ValueError(f"unknown SGP downsample type {kind!r} (known: {', '.join(DOWNSAMPLE_TYPES)})")


class SGPBlock(nn.Module):
    """One SGP layer (release: ``SGPBlock``); ``kernel_size`` is the release's SGP window."""

    def __init__(self, dim: int, kernel_size: int = 3, stride: int = 1, k: float = 1.5,
                 hidden_dim: int | None = None, droppath: float = 0.0, downsample: str = "max",
                 init_conv_vars: float = 1.0):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"the SGP window must be odd, got {kernel_size}")
        if dim % GROUP_NORM_GROUPS != 0:
            raise ValueError(f"SGP needs a feature dim divisible by {GROUP_NORM_GROUPS}, got {dim}")
        self.norm = ChannelLayerNorm(dim)
        self.mlp_norm = nn.GroupNorm(GROUP_NORM_GROUPS, dim)
        wide = window_kernel_size(kernel_size, k)
        self.psi = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.fc = nn.Conv1d(dim, dim, 1, groups=dim)
        self.convw = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.convkw = nn.Conv1d(dim, dim, wide, padding=wide // 2, groups=dim)
        self.global_fc = nn.Conv1d(dim, dim, 1, groups=dim)
        self.downsample, self.stride = _downsample(dim, stride, downsample)
        hidden = 4 * dim if hidden_dim is None else hidden_dim
        self.mlp = nn.Sequential()
        self.mlp.add_module("fc1", nn.Conv1d(dim, hidden, 1))
        self.mlp.add_module("act", nn.GELU())
        self.mlp.add_module("fc2", nn.Conv1d(hidden, dim, 1))
        if droppath > 0.0:
            self.sgp_scale = LayerScaleDropPath(dim, droppath)
            self.mlp_scale = LayerScaleDropPath(dim, droppath)
        else:
            self.sgp_scale = nn.Identity()
            self.mlp_scale = nn.Identity()
        for conv in (self.psi, self.fc, self.convw, self.convkw, self.global_fc):
            nn.init.normal_(conv.weight, 0, init_conv_vars)
        for conv in (self.psi, self.fc, self.convw, self.convkw, self.global_fc):
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        length = x.shape[-1]
        if length % self.stride != 0:
            raise ValueError(f"sequence length {length} is not divisible by stride {self.stride}")
        x = self.downsample(x)
        out_mask = downsample_mask(mask, length // self.stride, x.dtype).detach()
        out = self.norm(x)
        psi = self.psi(out)
        fc = self.fc(out)
        convw = self.convw(out)
        convkw = self.convkw(out)
        phi = torch.relu(self.global_fc(out.mean(dim=-1, keepdim=True)))
        out = fc * phi + (convw + convkw) * psi + out
        out = x * out_mask + self.sgp_scale(out)
        out = out + self.mlp_scale(self.mlp(self.mlp_norm(out)))
        return out, out_mask.bool()


class SGPEncoder(nn.Module):
    """``num_stem`` SGP layers at stride 1 (window 1, no drop-path, as the release), then
    one downsampling SGP layer per extra level (window ``windows[1 + l]``); returns the
    pyramid (stem output first) and its masks."""

    def __init__(self, dim: int, num_stem: int, num_levels: int, windows: list[int],
                 scale_factor: int = 2, k: float = 1.5, hidden_dim: int | None = None,
                 droppath: float = 0.0, downsample: str = "max", init_conv_vars: float = 1.0):
        super().__init__()
        if len(windows) != num_levels + 1:
            raise ValueError(f"need {num_levels + 1} SGP window sizes, got {len(windows)}")
        self.stem = nn.ModuleList(
            SGPBlock(dim, 1, 1, k=k, hidden_dim=hidden_dim, init_conv_vars=init_conv_vars)
            for _ in range(num_stem)
        )
        self.levels = nn.ModuleList(
            SGPBlock(dim, windows[1 + index], scale_factor, k=k, hidden_dim=hidden_dim, droppath=droppath,
                     downsample=downsample, init_conv_vars=init_conv_vars)
            for index in range(num_levels)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor):
        for block in self.stem:
            x, mask = block(x, mask)
        feats, masks = [x], [mask]
        for block in self.levels:
            x, mask = block(x, mask)
            feats.append(x)
            masks.append(mask)
        return feats, masks
