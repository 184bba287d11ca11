"""What every video backbone promises: one snippet in, one feature vector out.

A backbone takes a batch of normalised clips ``B x C x T x H x W`` (C = 3 for RGB and
temporal-gradient input, 2 for optical flow) and returns ``B x feature_dim`` float32
features, pooled over time and space. It also says how its input must be normalised
(``input_mean`` / ``input_std``, per channel, for pixels in [0, 1]), how many frames a
snippet usually has (``num_frames_hint``) and the fewest it can take (``min_frames``).

Checkpoint support is declared here too, so that ``checkpoints.py`` can stay generic:
``checkpoint_layouts`` names the public release layouts a family understands,
``release_names(key, layout)`` maps one of our state-dict keys to its name(s) in a
release, and ``input_conv_keys`` lists the convolutions that see the raw input (the
ones whose kernels are adapted when RGB weights go into a flow network).
"""

from __future__ import annotations

import torch
from torch import nn

from rgbtad.core.errors import RgbtadError

#: Input channels per modality: RGB frames, optical flow (x, y), temporal gradient.
MODALITY_CHANNELS = {"rgb": 3, "flow": 2, "tg": 3}

#: ImageNet statistics (torchvision, mmaction2 ``mean=[123.675, 116.28, 103.53]`` / 255).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: mmaction2 flow statistics (``mean=[128, 128], std=[128, 128]`` on 0..255 images).
MMACTION_FLOW_MEAN = (128 / 255, 128 / 255)
MMACTION_FLOW_STD = (128 / 255, 128 / 255)
#: Pixels mapped to [-1, 1], as in the Kinetics I3D release (pytorch-i3d).
SYMMETRIC_MEAN = (0.5, 0.5, 0.5)
SYMMETRIC_STD = (0.5, 0.5, 0.5)
#: pytorchvideo's Kinetics statistics for SlowFast.
PYTORCHVIDEO_MEAN = (0.45, 0.45, 0.45)
PYTORCHVIDEO_STD = (0.225, 0.225, 0.225)


def check_modality(modality: str) -> int:
    """Return the number of input channels of ``modality``; raise on an unknown one."""
    if modality not in MODALITY_CHANNELS:
        known = ", ".join(MODALITY_CHANNELS)
        raise RgbtadError(f"unknown modality {modality!r} (expected one of: {known})")
    return MODALITY_CHANNELS[modality]


class VideoBackbone(nn.Module):
    """Base class: input checks, float32 output, checkpoint-layout hooks."""

    feature_dim: int
    num_frames_hint: int | None = None
    min_frames: int = 1
    #: Public release layouts this family can read (``"native"`` is always accepted).
    checkpoint_layouts: tuple[str, ...] = ()
    #: Our state-dict keys of the convolutions that see the raw input.
    input_conv_keys: tuple[str, ...] = ()

    def __init__(self, name: str, modality: str,
                 rgb_stats: tuple[tuple[float, ...], tuple[float, ...]],
                 flow_stats: tuple[tuple[float, ...], tuple[float, ...]]) -> None:
        super().__init__()
        self.name = name
        self.modality = modality
        self.in_channels = check_modality(modality)
        # Temporal gradients are differences of frames normalised with the RGB statistics,
        # so a TG network shares the RGB tuples (the mean cancels in the difference).
        mean, std = flow_stats if modality == "flow" else rgb_stats
        self.input_mean = tuple(float(v) for v in mean)
        self.input_std = tuple(float(v) for v in std)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        self.check_input(clips)
        return self.forward_features(clips).float()

    def forward_features(self, clips: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def check_input(self, clips: torch.Tensor) -> None:
        if clips.dim() != 5 or clips.shape[1] != self.in_channels:
            raise RgbtadError(
                f"backbone {self.name} ({self.modality}) expects clips of shape "
                f"B x {self.in_channels} x T x H x W, got {tuple(clips.shape)}")
        if clips.shape[2] < self.min_frames:
            raise RgbtadError(
                f"backbone {self.name} needs at least {self.min_frames} frames per snippet, "
                f"got {clips.shape[2]}")

    def release_names(self, key: str, layout: str) -> list[str]:
        """Names of our state-dict ``key`` in a release ``layout``; the first is canonical."""
        raise NotImplementedError(f"{type(self).__name__} has no {layout} key mapping")

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, modality={self.modality!r}, "
                f"feature_dim={self.feature_dim}")


def global_pool(x: torch.Tensor) -> torch.Tensor:
    """Average every axis after the channels, in float32 (safe under bf16 autocast)."""
    return x.float().flatten(2).mean(dim=2)
