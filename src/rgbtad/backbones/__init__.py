"""Video backbones in plain PyTorch: snippet (B x C x T x H x W) -> feature (B x D).

``create_backbone(name, modality, weights)`` builds one of ``BACKBONES`` (TSM-R18/R50,
a tiny TSM, Inception I3D, I3D-R50, SlowFast-R50) and ``load_checkpoint`` reads public
releases (mmaction2, torchvision, pytorch-i3d, pytorchvideo) into it.
"""

from .base import MODALITY_CHANNELS, VideoBackbone
from .checkpoints import LAYOUTS, detect_layout, load_checkpoint, read_state_dict, release_state_dict
from .registry import BACKBONES, create_backbone
from .tsm import temporal_shift

__all__ = [
    "BACKBONES",
    "LAYOUTS",
    "MODALITY_CHANNELS",
    "VideoBackbone",
    "create_backbone",
    "detect_layout",
    "load_checkpoint",
    "read_state_dict",
    "release_state_dict",
    "temporal_shift",
]
