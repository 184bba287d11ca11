"""Which parameters of a detector take weight decay (the release's ``make_optimizer`` rule)."""

from __future__ import annotations

from torch import nn

from rgbtad.detection.attention import ConvAttention
from rgbtad.detection.blocks import ChannelLayerNorm, LayerScaleDropPath, Scale

__all__ = ["decay_param_groups"]


def decay_param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two optimizer groups as the release's ``make_optimizer``: weight decay on the
    weights of convolutions and linear layers; none on biases, LayerNorms, GroupNorms
    (TriDet's SGP layers), per-level scales, layer scales and relative position biases."""
    decay, no_decay = {}, {}
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            full = f"{module_name}.{name}" if module_name else name
            if name == "bias":
                no_decay[full] = param
            elif name == "weight" and isinstance(module, (nn.Conv1d, nn.Linear)):
                decay[full] = param
            elif isinstance(module, (ChannelLayerNorm, nn.GroupNorm, Scale, LayerScaleDropPath)):
                no_decay[full] = param
            elif isinstance(module, ConvAttention) and name == "rel_pos":
                no_decay[full] = param
    named = dict(model.named_parameters())
    missing = set(named) - set(decay) - set(no_decay)
    if missing:
        raise RuntimeError(f"parameters without a weight-decay rule: {sorted(missing)}")
    return [
        {"params": [decay[k] for k in sorted(decay)], "weight_decay": weight_decay},
        {"params": [no_decay[k] for k in sorted(no_decay)], "weight_decay": 0.0},
    ]
