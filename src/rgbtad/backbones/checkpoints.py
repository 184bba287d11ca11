"""Load public backbone releases (and our own state dicts) into rgbtad backbones.

Layouts (``layout=None`` detects it from the keys):

- ``"native"``: our own ``net.state_dict()``.
- ``"mmaction2"``: mmaction2 recognisers, ``{"state_dict": {"backbone.conv1.conv.weight",
  "backbone.layer1.0.conv1.conv.weight" (TSM: ``...conv1.conv.net.weight``),
  "backbone.layer1.0.conv1.bn.running_mean", "backbone.layer1.0.downsample.conv.weight",
  ..., "cls_head.fc_cls.weight"}, "meta": ...}``. TSM-R18/R50 and I3D-R50.
- ``"torchvision"``: ``conv1.weight``, ``bn1.*``, ``layer1.0.conv1.weight``,
  ``layer1.0.downsample.0.weight``, ``fc.*`` (ImageNet ResNets; the original TSM code's
  ``module.base_model.*`` checkpoints). For I3D-R50 the 2-D kernels are inflated.
- ``"pytorch_i3d"``: pytorch-i3d's ``rgb_imagenet.pt`` / ``flow_imagenet.pt``:
  ``Conv3d_1a_7x7.conv3d.weight``, ``Mixed_3b.b1a.bn.running_var``, ..., ``logits.*``.
- ``"pytorchvideo"``: pytorchvideo's ``SLOWFAST_8x8_R50.pyth`` (``{"model_state": ...}``):
  ``blocks.0.multipathway_blocks.0.conv.weight``, ``blocks.1.multipathway_blocks.0.
  res_blocks.0.branch2.conv_a.weight``, ``blocks.0.multipathway_fusion.conv_fast_to_slow.
  weight``, ..., ``blocks.6.proj.*``.

Classifier heads (``cls_head.*``, ``fc.*``/``new_fc.*``, ``logits.*``, ``blocks.6.*``) are
skipped. Anything else that does not fit is an error that lists the missing keys, the
unexpected keys and the shape mismatches. A checkpoint without ``num_batches_tracked``
buffers (older PyTorch) is fine.

Input channels: RGB weights (3-channel input kernels) loaded into a flow network get
the cross-modality initialisation of TSN (Wang et al., ECCV 2016): the kernel is
averaged over the RGB channels and that average is copied to each of the 2 flow
channels. A temporal-gradient network has 3 input channels and takes RGB weights as
they are. A flow checkpoint (2-channel kernels) loads into a flow network directly.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from rgbtad.core.errors import RgbtadError
from rgbtad.core.torchio import load_torch_file

from .base import VideoBackbone

LAYOUTS = ("native", "mmaction2", "torchvision", "pytorch_i3d", "pytorchvideo")

# Prefixes a layout's keys may carry (tried in order); "module." is stripped beforehand.
_PREFIXES = {"mmaction2": ("backbone.", ""), "torchvision": ("", "base_model.")}
# Classifier heads and preprocessing buffers that are not part of a backbone.
_IGNORED = {
    "mmaction2": re.compile(r"^(cls_head|data_preprocessor)\."),
    "torchvision": re.compile(r"^(base_model\.)?(new_)?fc\."),
    "pytorch_i3d": re.compile(r"^logits\."),
    "pytorchvideo": re.compile(r"^blocks\.6\."),
}
# Containers that wrap a state dict, in the order they are looked for.
_WRAPPERS = ("state_dict", "model_state", "model", "module", "net")
_SHOW = 5  # keys listed per kind of problem in an error message


# --- reading ------------------------------------------------------------------------------

def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint file and return its flat ``name -> tensor`` dict.

    Unwraps ``state_dict`` / ``model_state`` / ``model`` containers and strips a
    ``module.`` (DataParallel) prefix. The file is read by `load_torch_file`: tensors and
    plain containers only, foreign objects in a release's metadata as inert stand-ins.
    """
    obj = load_torch_file(path, "checkpoint", foreign_metadata=True)
    state = _unwrap(obj)
    if not state:
        raise RgbtadError(f"{path}: no tensors found in checkpoint (expected a state dict)")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _unwrap(obj) -> dict[str, torch.Tensor]:
    for _ in range(4):
        if not isinstance(obj, dict):
            return {}
        if any(isinstance(v, torch.Tensor) for v in obj.values()):
            return {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            return {}
        obj = inner
    return {}


# --- layouts ------------------------------------------------------------------------------

def detect_layout(keys, net: VideoBackbone | None = None) -> str | None:
    """Guess the layout of a state dict from its keys (None when nothing fits)."""
    keys = list(keys)
    if net is not None and set(net.state_dict()) & set(keys):
        return "native"
    if any(k.startswith("Conv3d_1a_7x7.") for k in keys):
        return "pytorch_i3d"
    if any(k.startswith("blocks.0.multipathway_blocks.") for k in keys):
        return "pytorchvideo"
    if any(k.startswith("backbone.") or k.endswith("conv1.conv.weight") for k in keys):
        return "mmaction2"
    if any(k in ("conv1.weight", "base_model.conv1.weight") for k in keys):
        return "torchvision"
    return None


def _candidates(net: VideoBackbone, key: str, layout: str) -> list[str]:
    if layout == "native":
        return [key]
    names = net.release_names(key, layout)
    return [prefix + name for name in names for prefix in _PREFIXES.get(layout, ("",))]


def release_state_dict(net: VideoBackbone, layout: str) -> dict[str, torch.Tensor]:
    """Our weights under their names in a public ``layout`` (the inverse of loading)."""
    if layout != "native" and layout not in net.checkpoint_layouts:
        raise RgbtadError(f"backbone {net.name} has no {layout} layout "
                          f"(supported: {', '.join(('native',) + net.checkpoint_layouts)})")
    return {_candidates(net, key, layout)[0]: value.detach().clone()
            for key, value in net.state_dict().items()}


# --- loading ------------------------------------------------------------------------------

def _fit(src: torch.Tensor, ref: torch.Tensor, is_input_conv: bool) -> torch.Tensor | None:
    """``src`` reshaped to ``ref``'s shape when a known adaptation applies, else None."""
    t = src
    if t.dim() == 4 and ref.dim() == 5 and t.shape[0] == ref.shape[0] and t.shape[2:] == ref.shape[3:]:
        # 2-D ImageNet kernel into a 3-D conv (I3D inflation): repeat over time, keep the
        # response to a static clip unchanged.
        kt = ref.shape[2]
        t = t.unsqueeze(2).expand(-1, -1, kt, -1, -1) / kt
    if is_input_conv and t.dim() == ref.dim() and t.shape[1] == 3 and ref.shape[1] != 3 \
            and t.shape[0] == ref.shape[0] and t.shape[2:] == ref.shape[2:]:
        # RGB kernel into a flow network: TSN cross-modality initialisation.
        t = t.mean(dim=1, keepdim=True).expand(-1, ref.shape[1], *t.shape[2:])
    if t.shape != ref.shape:
        return None
    return t.to(dtype=ref.dtype).clone()


def _listing(what: str, items: list[str]) -> str:
    shown = ", ".join(items[:_SHOW]) + (", ..." if len(items) > _SHOW else "")
    return f"{what} [{len(items)}]: {shown}"


def load_checkpoint(net: VideoBackbone, path: str | Path, layout: str | None = None) -> VideoBackbone:
    """Load the weights in ``path`` into ``net`` (in place) and return ``net``.

    ``layout`` is one of ``LAYOUTS``; None detects it. Raises ``RgbtadError`` naming the
    file when the file cannot be read or its weights do not fit the network.
    """
    state = read_state_dict(path)
    if layout is None:
        layout = detect_layout(state, net)
        if layout is None:
            raise RgbtadError(f"{path}: cannot tell the checkpoint layout from its keys "
                              f"(first: {', '.join(list(state)[:3])}); the layouts read are {', '.join(LAYOUTS)}")
    if layout not in LAYOUTS:
        raise RgbtadError(f"{path}: unknown checkpoint layout {layout!r} (expected one of: {', '.join(LAYOUTS)})")
    if layout != "native" and layout not in net.checkpoint_layouts:
        raise RgbtadError(f"{path}: a {layout} checkpoint does not fit backbone {net.name} "
                          f"(it reads: {', '.join(('native',) + net.checkpoint_layouts)})")

    target = net.state_dict()
    loaded: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    missing: list[str] = []
    mismatched: list[str] = []
    for key, ref in target.items():
        names = _candidates(net, key, layout)
        found = next((n for n in names if n in state), None)
        if found is None:
            if not key.endswith("num_batches_tracked"):
                missing.append(names[0])
            continue
        used.add(found)
        fitted = _fit(state[found], ref, key in net.input_conv_keys)
        if fitted is None:
            mismatched.append(f"{found} {list(state[found].shape)} vs {list(ref.shape)}")
        else:
            loaded[key] = fitted
    ignored = _IGNORED.get(layout)
    unexpected = [k for k in state if k not in used and not (ignored and ignored.search(k))]
    if missing or unexpected or mismatched:
        problems = [_listing(what, items) for what, items in (
            ("missing keys", missing), ("unexpected keys", unexpected),
            ("shape mismatches (checkpoint vs model)", mismatched)) if items]
        raise RgbtadError(f"{path}: checkpoint does not fit backbone {net.name} ({net.modality}, "
                          f"{layout} layout): " + "; ".join(problems))
    net.load_state_dict({**target, **loaded})
    return net
