"""Release checkpoint -> rgbtad state dict, for the import of official ActionFormer releases
(`rgbtad.compat.actionformer`).

The EMA weights (``state_dict_ema``, what the release evaluates) are used, else the raw
``state_dict`` with a warning. Keys carry the ``module.`` prefix of ``nn.DataParallel``.
Release module tree -> rgbtad module tree (after dropping ``module.``)::

    backbone.embd.{i}.conv.{weight,bias}        embed.convs.{i}.{weight,bias}
    backbone.embd_norm.{i}.{weight,bias}        embed.norms.{i}.{weight,bias}       [1,C,1] -> [C]
    backbone.stem.{i}.<block>                   encoder.stem.{i}.<block>
    backbone.branch.{i}.<block>                 encoder.levels.{i}.<block>
      transformer block:
        ln1 / ln2                               attn_norm / mlp_norm                [1,C,1] -> [C]
        attn.query_conv.conv.weight             attn.q_conv.weight     (same for key_conv -> k_conv,
        attn.query_norm                         attn.q_norm             value_conv -> v_conv and norms)
        attn.query / attn.key / attn.value      attn.q_proj / attn.k_proj / attn.v_proj
        attn.proj                               attn.out_proj
        attn.rel_pe                             attn.rel_pos                        [1,1,H,W] -> [H,W]
        mlp.0 / mlp.3                           mlp.fc1 / mlp.fc2
        drop_path_attn.scale / drop_path_mlp.scale   attn_scale.gamma / mlp_scale.gamma  [1,C,1] -> [C]
      conv block:
        conv1.conv / conv2.conv / downsample.conv    conv1 / conv2 / shortcut
    neck.fpn_norms.{i}                          neck.norms.{i}                      [1,C,1] -> [C]
    neck.lateral_convs.{i}.conv                 neck.lateral.{i}
    neck.fpn_convs.{i}.conv                     neck.smooth.{i}
    cls_head.head.{i}.conv / cls_head.norm.{i}  cls_head.trunk.{i} / cls_head.trunk_norms.{i}
    cls_head.cls_head.conv                      cls_head.logits
    reg_head.head.{i}.conv / reg_head.norm.{i}  reg_head.trunk.{i} / reg_head.trunk_norms.{i}
    reg_head.offset_head.conv                   reg_head.offsets
    reg_head.scale.{l}.scale                    reg_head.level_scales.{l}.value

The release keeps no buffers in its checkpoints (position tables and points are
non-persistent); rgbtad's loss normaliser buffer ``criterion.normalizer`` is set to
``train_cfg.init_loss_norm``. The mapping is strict: a release key without a rule, a
parameter of the configured detector that nothing fills, or a shape that does not fit is
an error that lists the keys.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from rgbtad.core.errors import RgbtadError
from rgbtad.core.torchio import load_torch_file

log = logging.getLogger(__name__)

__all__ = ["convert_state_dict", "load_release_checkpoint", "map_release_key"]

_BLOCK_RULES = [
    (r"ln1\.(weight|bias)", r"attn_norm.\1", "vector"),
    (r"ln2\.(weight|bias)", r"mlp_norm.\1", "vector"),
    (r"attn\.query_conv\.conv\.weight", "attn.q_conv.weight", None),
    (r"attn\.key_conv\.conv\.weight", "attn.k_conv.weight", None),
    (r"attn\.value_conv\.conv\.weight", "attn.v_conv.weight", None),
    (r"attn\.query_norm\.(weight|bias)", r"attn.q_norm.\1", "vector"),
    (r"attn\.key_norm\.(weight|bias)", r"attn.k_norm.\1", "vector"),
    (r"attn\.value_norm\.(weight|bias)", r"attn.v_norm.\1", "vector"),
    (r"attn\.query\.(weight|bias)", r"attn.q_proj.\1", None),
    (r"attn\.key\.(weight|bias)", r"attn.k_proj.\1", None),
    (r"attn\.value\.(weight|bias)", r"attn.v_proj.\1", None),
    (r"attn\.proj\.(weight|bias)", r"attn.out_proj.\1", None),
    (r"attn\.rel_pe", "attn.rel_pos", "rel_pe"),
    (r"mlp\.0\.(weight|bias)", r"mlp.fc1.\1", None),
    (r"mlp\.3\.(weight|bias)", r"mlp.fc2.\1", None),
    (r"drop_path_attn\.scale", "attn_scale.gamma", "vector"),
    (r"drop_path_mlp\.scale", "mlp_scale.gamma", "vector"),
    (r"conv1\.conv\.(weight|bias)", r"conv1.\1", None),
    (r"conv2\.conv\.(weight|bias)", r"conv2.\1", None),
    (r"downsample\.conv\.(weight|bias)", r"shortcut.\1", None),
]

_RULES = [
    (r"backbone\.embd\.(\d+)\.conv\.(weight|bias)", r"embed.convs.\1.\2", None),
    (r"backbone\.embd_norm\.(\d+)\.(weight|bias)", r"embed.norms.\1.\2", "vector"),
    *[(r"backbone\.stem\.(\d+)\." + pat, r"encoder.stem.\1." + rep.replace("\\1", "\\2"), kind)
      for pat, rep, kind in _BLOCK_RULES],
    *[(r"backbone\.branch\.(\d+)\." + pat, r"encoder.levels.\1." + rep.replace("\\1", "\\2"), kind)
      for pat, rep, kind in _BLOCK_RULES],
    (r"neck\.fpn_norms\.(\d+)\.(weight|bias)", r"neck.norms.\1.\2", "vector"),
    (r"neck\.lateral_convs\.(\d+)\.conv\.(weight|bias)", r"neck.lateral.\1.\2", None),
    (r"neck\.fpn_convs\.(\d+)\.conv\.(weight|bias)", r"neck.smooth.\1.\2", None),
    (r"cls_head\.head\.(\d+)\.conv\.(weight|bias)", r"cls_head.trunk.\1.\2", None),
    (r"cls_head\.norm\.(\d+)\.(weight|bias)", r"cls_head.trunk_norms.\1.\2", "vector"),
    (r"cls_head\.cls_head\.conv\.(weight|bias)", r"cls_head.logits.\1", None),
    (r"reg_head\.head\.(\d+)\.conv\.(weight|bias)", r"reg_head.trunk.\1.\2", None),
    (r"reg_head\.norm\.(\d+)\.(weight|bias)", r"reg_head.trunk_norms.\1.\2", "vector"),
    (r"reg_head\.offset_head\.conv\.(weight|bias)", r"reg_head.offsets.\1", None),
    (r"reg_head\.scale\.(\d+)\.scale", r"reg_head.level_scales.\1.value", None),
]
_COMPILED = [(re.compile(pattern + r"$"), rep, kind) for pattern, rep, kind in _RULES]


def map_release_key(key: str) -> tuple[str, str | None] | None:
    """Our name for a release parameter (``module.`` already removed) and its reshape kind
    (``vector``: ``[1, C, 1] -> [C]``; ``rel_pe``: ``[1, 1, H, W] -> [H, W]``), or None."""
    for pattern, rep, kind in _COMPILED:
        match = pattern.match(key)
        if match:
            return match.expand(rep), kind
    return None


def _reshape(value: torch.Tensor, kind: str | None, target_shape: torch.Size) -> torch.Tensor | None:
    if kind == "vector" and value.dim() == 3 and value.shape[0] == 1 and value.shape[2] == 1:
        value = value.reshape(-1)
    elif kind == "rel_pe" and value.dim() == 4 and value.shape[:2] == (1, 1):
        value = value.reshape(value.shape[2], value.shape[3])
    return value if value.shape == target_shape else None


def convert_state_dict(release_state: dict[str, torch.Tensor], model: torch.nn.Module,
                       source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Map a release state dict onto ``model``'s names; strict (see module docstring)."""
    return strict_state_dict(release_state, model, source, map_release_key, _reshape, "weights")


def strict_state_dict(release_state: dict[str, torch.Tensor], model: torch.nn.Module, source: str,
                      map_key: Callable, fit: Callable, what: str) -> dict[str, torch.Tensor]:
    """A release state dict on ``model``'s names (float32), every parameter accounted for:
    `map_key(name)` gives our name and reshape kind (or None), `fit(value, kind, shape)` the
    reshaped tensor (or None on a shape mismatch); anything left over is one error naming
    `source` and `what` ("weights"). Buffers missing from the release keep ``model``'s."""
    target = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    unexpected, mismatched = [], []
    for key, value in release_state.items():
        name = key[len("module."):] if key.startswith("module.") else key
        mapped = map_key(name)
        if mapped is None or mapped[0] not in target:
            unexpected.append(key)
            continue
        ours, kind = mapped
        tensor = fit(value.detach().to(torch.float32), kind, target[ours].shape)
        if tensor is None:
            mismatched.append(f"{key} {tuple(value.shape)} -> {ours} {tuple(target[ours].shape)}")
            continue
        out[ours] = tensor.clone()
    params = {name for name, _ in model.named_parameters()}
    missing = sorted(params - set(out))
    problems = []
    if unexpected:
        problems.append(f"{len(unexpected)} key(s) the configured detector has no place for: "
                        + ", ".join(unexpected[:8]) + (" ..." if len(unexpected) > 8 else ""))
    if missing:
        problems.append(f"{len(missing)} detector parameter(s) not in the checkpoint: "
                        + ", ".join(missing[:8]) + (" ..." if len(missing) > 8 else ""))
    if mismatched:
        problems.append("shape mismatch: " + "; ".join(mismatched[:5]))
    if problems:
        raise RgbtadError(f"{source}: {what} do not fit the config ({' | '.join(problems)})")
    for name, value in target.items():  # buffers (loss normaliser)
        if name not in out:
            out[name] = value.clone()
    return out


def load_release_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The EMA state dict of a release checkpoint (or its raw one, with a warning)."""
    path = Path(path)
    # release checkpoints may pickle scheduler or argparse objects: read as inert stand-ins
    checkpoint = load_torch_file(path, "checkpoint", foreign_metadata=True)
    if not isinstance(checkpoint, dict):
        raise RgbtadError(f"{path}: expected a dict checkpoint, got {type(checkpoint).__name__}")
    if isinstance(checkpoint.get("state_dict_ema"), dict):
        state = checkpoint["state_dict_ema"]
    elif isinstance(checkpoint.get("state_dict"), dict):
        warnings.warn(f"{path}: no 'state_dict_ema'; importing the raw (non-EMA) weights 'state_dict'",
                      stacklevel=2)
        log.warning("%s: no 'state_dict_ema'; importing the raw weights", path)
        state = checkpoint["state_dict"]
    elif checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        state = checkpoint
    else:
        raise RgbtadError(f"{path}: neither 'state_dict_ema' nor 'state_dict' in the checkpoint")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
