"""TriDet release state dict -> rgbtad's `rgbtad.detection.tridet.TriDet` parameter names.

Release: dingfengshi/TriDet; its checkpoints hold ``nn.DataParallel`` keys (``module.``
prefix, dropped here). Release module tree -> rgbtad module tree::

    backbone.embd.{i}.conv / embd_norm.{i}       embed.convs.{i} / embed.norms.{i}   [1,C,1] -> [C]
    backbone.stem.{i}.<block>                    encoder.stem.{i}.<block>
    backbone.branch.{i}.<block>                  encoder.levels.{i}.<block>
      SGP block:
        ln / gn                                  norm [1,C,1] -> [C] / mlp_norm
        psi, fc, convw, convkw, global_fc        the same names
        downsample.1 (avg downsampling)          downsample.proj
        mlp.0 / mlp.2                            mlp.fc1 / mlp.fc2
        drop_path_out.scale / drop_path_mlp.scale    sgp_scale.gamma / mlp_scale.gamma  [1,C,1] -> [C]
      conv block (backbone ``conv``):
        conv1.conv / conv2.conv / downsample.conv    conv1 / conv2 / shortcut
    neck.fpn_norms.{i} / lateral_convs.{i}.conv / fpn_convs.{i}.conv
                                                 neck.norms.{i} / neck.lateral.{i} / neck.smooth.{i}
    {cls,start,end}_head.head.{i}.conv / .norm.{i} / .cls_head.conv
                                                 {cls,start,end}_head.trunk.{i} / .trunk_norms.{i} / .logits
    reg_head.head.{i}.conv / reg_head.norm.{i}   reg_head.trunk.{i} / reg_head.trunk_norms.{i}
    reg_head.offset_head.conv                    reg_head.offsets
    reg_head.scale.{l}.scale                     reg_head.level_scales.{l}.value

The release keeps no buffers in its state dict; rgbtad's loss normaliser keeps the model's
value. The mapping is strict: a key without a rule, a parameter nothing fills, or a shape
that does not fit is an error that lists them.

`spec_from_release` reads the release's model settings (``cfg["model"]`` after its
``load_config``: the meta-architecture's keyword arguments with ``train_cfg`` and
``test_cfg``) into a `TriDetSpec`. A whole release (config + checkpoint) becomes a run
directory through `rgbtad.compat.tridet_import`.
"""

from __future__ import annotations

import re

import torch

from rgbtad.compat.actionformer_weights import strict_state_dict
from rgbtad.core.errors import RgbtadError
from rgbtad.detection.postprocess import NMSConfig
from rgbtad.detection.tridet import TriDetSpec

__all__ = ["convert_tridet_state_dict", "map_tridet_key", "spec_from_release"]

_BLOCK_RULES = [
    (r"ln\.(weight|bias)", r"norm.\1", "vector"),
    (r"gn\.(weight|bias)", r"mlp_norm.\1", None),
    (r"(psi|fc|convw|convkw|global_fc)\.(weight|bias)", r"\1.\2", None),
    (r"downsample\.1\.(weight|bias)", r"downsample.proj.\1", None),
    (r"mlp\.0\.(weight|bias)", r"mlp.fc1.\1", None),
    (r"mlp\.2\.(weight|bias)", r"mlp.fc2.\1", None),
    (r"drop_path_out\.scale", "sgp_scale.gamma", "vector"),
    (r"drop_path_mlp\.scale", "mlp_scale.gamma", "vector"),
    (r"conv1\.conv\.(weight|bias)", r"conv1.\1", None),
    (r"conv2\.conv\.(weight|bias)", r"conv2.\1", None),
    (r"downsample\.conv\.(weight|bias)", r"shortcut.\1", None),
]

_BLOCK_PREFIXES = [
    (r"backbone\.stem\.(\d+)\.", r"encoder.stem.\1."),
    (r"backbone\.branch\.(\d+)\.", r"encoder.levels.\1."),
]


def _cls_head_rules(name: str) -> list[tuple[str, str, str | None]]:
    return [
        (rf"{name}\.head\.(\d+)\.conv\.(weight|bias)", rf"{name}.trunk.\1.\2", None),
        (rf"{name}\.norm\.(\d+)\.(weight|bias)", rf"{name}.trunk_norms.\1.\2", "vector"),
        (rf"{name}\.cls_head\.conv\.(weight|bias)", rf"{name}.logits.\1", None),
    ]


_RULES = [
    (r"backbone\.embd\.(\d+)\.conv\.(weight|bias)", r"embed.convs.\1.\2", None),
    (r"backbone\.embd_norm\.(\d+)\.(weight|bias)", r"embed.norms.\1.\2", "vector"),
    (r"neck\.fpn_norms\.(\d+)\.(weight|bias)", r"neck.norms.\1.\2", "vector"),
    (r"neck\.lateral_convs\.(\d+)\.conv\.(weight|bias)", r"neck.lateral.\1.\2", None),
    (r"neck\.fpn_convs\.(\d+)\.conv\.(weight|bias)", r"neck.smooth.\1.\2", None),
    *_cls_head_rules("cls_head"),
    *_cls_head_rules("start_head"),
    *_cls_head_rules("end_head"),
    (r"reg_head\.head\.(\d+)\.conv\.(weight|bias)", r"reg_head.trunk.\1.\2", None),
    (r"reg_head\.norm\.(\d+)\.(weight|bias)", r"reg_head.trunk_norms.\1.\2", "vector"),
    (r"reg_head\.offset_head\.conv\.(weight|bias)", r"reg_head.offsets.\1", None),
    (r"reg_head\.scale\.(\d+)\.scale", r"reg_head.level_scales.\1.value", None),
]


def _compile(rules):
    return [(re.compile(pattern + "$"), rep, kind) for pattern, rep, kind in rules]


_BLOCKS = _compile(_BLOCK_RULES)
_PREFIXES = [(re.compile(pattern), rep) for pattern, rep in _BLOCK_PREFIXES]
_OTHERS = _compile(_RULES)


def map_tridet_key(key: str) -> tuple[str, str | None] | None:
    """Our name for a release parameter (``module.`` already removed) and its reshape kind
    (``vector``: ``[1, C, 1] -> [C]``), or None when no rule fits."""
    for prefix, prefix_rep in _PREFIXES:
        head = prefix.match(key)
        if head is None:
            continue
        rest = key[head.end():]
        for pattern, rep, kind in _BLOCKS:
            match = pattern.match(rest)
            if match:
                return head.expand(prefix_rep) + match.expand(rep), kind
        return None
    for pattern, rep, kind in _OTHERS:
        match = pattern.match(key)
        if match:
            return match.expand(rep), kind
    return None


def _fit(value: torch.Tensor, kind: str | None, shape: torch.Size) -> torch.Tensor | None:
    if kind == "vector" and value.dim() == 3 and value.shape[0] == 1 and value.shape[2] == 1:
        value = value.reshape(-1)
    return value if value.shape == shape else None


def convert_tridet_state_dict(release_state: dict[str, torch.Tensor], model: torch.nn.Module,
                              source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """A release state dict mapped onto ``model``'s names (float32), ready for
    ``model.load_state_dict(..., strict=True)``; strict (see the module docstring)."""
    return strict_state_dict(release_state, model, source, map_tridet_key, _fit, "TriDet weights")


def spec_from_release(model_cfg: dict) -> TriDetSpec:
    """The `TriDetSpec` of the release's merged model settings. Not carried over:
    ``max_buffer_len_factor`` (rgbtad's points have no length limit) and ``train_cfg.dropout``
    (TriDet has no dropout); segment voting weights by the score alone, as the release."""
    m, train, test = model_cfg, model_cfg["train_cfg"], model_cfg["test_cfg"]
    backbones = {"SGP": "sgp", "conv": "conv"}
    if m["backbone_type"] not in backbones:
        raise RgbtadError(f"release backbone_type {m['backbone_type']!r} is not TriDet's (SGP or conv)")
    window = m["n_sgp_win_size"]
    nms = NMSConfig(
        pre_nms_thresh=test["pre_nms_thresh"], pre_nms_topk=test["pre_nms_topk"],
        duration_thresh=test["duration_thresh"], nms_method=test["nms_method"],
        iou_threshold=test["iou_threshold"], min_score=test["min_score"], max_seg_num=test["max_seg_num"],
        multiclass=test["multiclass_nms"], sigma=test["nms_sigma"], voting_thresh=test["voting_thresh"],
        voting_iou_weight=False,
    )
    return TriDetSpec(
        input_dim=m["input_dim"], num_classes=m["num_classes"], max_seq_len=m["max_seq_len"],
        backbone=backbones[m["backbone_type"]], arch=tuple(m["backbone_arch"]), scale_factor=m["scale_factor"],
        embd_dim=m["embd_dim"], embd_kernel_size=m["embd_kernel_size"], embd_with_ln=m["embd_with_ln"],
        sgp_mlp_dim=m["sgp_mlp_dim"], sgp_win_size=window if isinstance(window, int) else tuple(window),
        sgp_k=m["k"], init_conv_vars=m["init_conv_vars"], downsample_type=m["downsample_type"],
        use_abs_pe=m["use_abs_pe"], droppath=train["droppath"], input_noise=m["input_noise"],
        fpn_type=m["fpn_type"], fpn_dim=m["fpn_dim"], fpn_with_ln=m["fpn_with_ln"], head_dim=m["head_dim"],
        head_num_layers=m["head_num_layers"], head_kernel_size=m["head_kernel_size"],
        boundary_kernel_size=m["boudary_kernel_size"], head_with_ln=m["head_with_ln"],
        use_trident_head=m["use_trident_head"], num_bins=m["num_bins"], iou_weight_power=m["iou_weight_power"],
        regression_range=tuple(tuple(r) for r in m["regression_range"]), cls_prior_prob=train["cls_prior_prob"],
        head_empty_cls=tuple(train["head_empty_cls"]), center_sample=train["center_sample"],
        center_sample_radius=train["center_sample_radius"], loss_weight=train["loss_weight"],
        label_smoothing=train["label_smoothing"], init_loss_norm=train["init_loss_norm"], nms=nms,
    )
