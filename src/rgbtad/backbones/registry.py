"""The backbone registry: one name per architecture, one ``create_backbone``."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Callable

from rgbtad.core.errors import RgbtadError

from .base import VideoBackbone, check_modality
from .checkpoints import load_checkpoint
from .i3d_inception import i3d_inception
from .i3d_resnet import i3d_r50
from .slowfast import slowfast_r50
from .tsm import tsm_r18, tsm_r50, tsm_tiny

#: name -> factory(modality="rgb", **options) returning a randomly initialised backbone.
BACKBONES: dict[str, Callable[..., VideoBackbone]] = {
    "tsm_r18": tsm_r18,
    "tsm_r50": tsm_r50,
    "tsm_tiny": tsm_tiny,
    "i3d_inception": i3d_inception,
    "i3d_r50": i3d_r50,
    "slowfast_r50": slowfast_r50,
}


def create_backbone(name: str, modality: str = "rgb", weights: str | Path | None = None, *,
                    layout: str | None = None, **kwargs) -> VideoBackbone:
    """Build backbone ``name`` for ``modality`` ("rgb", "flow" or "tg"), in eval mode.

    ``weights``: a local checkpoint file (see ``checkpoints.py`` for the layouts; ``layout``
    forces one); random initialisation when None. ``kwargs`` go to the factory
    (e.g. ``shift_div`` for TSM).
    """
    if name not in BACKBONES:
        raise RgbtadError(f"unknown backbone {name!r} (expected one of: {', '.join(BACKBONES)})")
    check_modality(modality)
    factory = BACKBONES[name]
    try:
        inspect.signature(factory).bind(modality, **kwargs)
    except TypeError as err:
        raise RgbtadError(f"backbone {name}: bad option ({err})") from None
    net = factory(modality, **kwargs)
    if weights is not None:
        load_checkpoint(net, weights, layout)
    return net.eval()
