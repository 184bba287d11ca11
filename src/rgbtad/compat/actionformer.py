"""Import of official ActionFormer release checkpoints and configs.

``import_actionformer(config_path, checkpoint_path, out_dir)`` turns a release YAML config
(happyharrycn/actionformer_release, ``configs/*.yaml``) and one of its checkpoints
(``epoch_XXX.pth.tar``) into an rgbtad run directory that ``rgbtad infer`` can use.

Config
------
The YAML is merged over the release's defaults (``libs/core/config.py``: missing keys take
the default, nested sections merge key by key) and the release's derived fields are applied
(``model.input_dim`` / ``num_classes`` / ``max_seq_len`` come from ``dataset``; the model
gets ``train_cfg`` / ``test_cfg``). Every release field maps to one rgbtad field (table in
``_config_values``). Unknown keys and settings rgbtad does not implement (another
``model_name`` or backbone, multi-input projections, several splits) are errors; settings
that only affect the release's training scripts or its score fusion are reported as
warnings. Two pieces of the release's training script are applied too: the learning rate
and the loader workers are multiplied by the number of ``devices``, and the classifier's
empty classes come from the dataset (none for the release's datasets).

Checkpoint
----------
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

import copy
import logging
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from rgbtad.config import Config, build_config
from rgbtad.core.errors import RgbtadError
from rgbtad.core.jsonio import read_json_file
from rgbtad.core.torchio import load_torch_file
from rgbtad.core.yamlio import read_yaml_mapping

log = logging.getLogger(__name__)

__all__ = [
    "RELEASE_DEFAULTS",
    "config_from_release",
    "convert_state_dict",
    "import_actionformer",
    "load_release_checkpoint",
    "map_release_key",
    "read_release_config",
]

# The release's defaults (libs/core/config.py, latest version), as data.
RELEASE_DEFAULTS: dict[str, Any] = {
    "init_rand_seed": 1234567891,
    "dataset_name": "epic",
    "devices": ["cuda:0"],
    "train_split": ["training"],
    "val_split": ["validation"],
    "model_name": "LocPointTransformer",
    "dataset": {
        "feat_stride": 16,
        "num_frames": 32,
        "default_fps": None,
        "input_dim": 2304,
        "num_classes": 97,
        "downsample_rate": 1,
        "max_seq_len": 2304,
        "trunc_thresh": 0.5,
        "crop_ratio": None,
        "force_upsampling": False,
    },
    "loader": {"batch_size": 8, "num_workers": 4},
    "model": {
        "backbone_type": "convTransformer",
        "fpn_type": "identity",
        "backbone_arch": [2, 2, 5],
        "scale_factor": 2,
        "regression_range": [[0, 4], [4, 8], [8, 16], [16, 32], [32, 64], [64, 10000]],
        "n_head": 4,
        "n_mha_win_size": -1,
        "embd_kernel_size": 3,
        "embd_dim": 512,
        "embd_with_ln": True,
        "fpn_dim": 512,
        "fpn_with_ln": True,
        "fpn_start_level": 0,
        "head_dim": 512,
        "head_kernel_size": 3,
        "head_num_layers": 3,
        "head_with_ln": True,
        "max_buffer_len_factor": 6.0,
        "use_abs_pe": False,
        "use_rel_pe": False,
    },
    "train_cfg": {
        "center_sample": "radius",
        "center_sample_radius": 1.5,
        "loss_weight": 1.0,
        "cls_prior_prob": 0.01,
        "init_loss_norm": 2000,
        "clip_grad_l2norm": -1,
        "head_empty_cls": [],
        "dropout": 0.0,
        "droppath": 0.1,
        "label_smoothing": 0.0,
    },
    "test_cfg": {
        "pre_nms_thresh": 0.001,
        "pre_nms_topk": 5000,
        "iou_threshold": 0.1,
        "min_score": 0.01,
        "max_seg_num": 1000,
        "nms_method": "soft",
        "nms_sigma": 0.5,
        "duration_thresh": 0.05,
        "multiclass_nms": True,
        "ext_score_file": None,
        "voting_thresh": 0.75,
    },
    "opt": {
        "type": "AdamW",
        "momentum": 0.9,
        "weight_decay": 0.0,
        "learning_rate": 1e-3,
        "epochs": 30,
        "warmup": True,
        "warmup_epochs": 5,
        "schedule_type": "cosine",
        "schedule_steps": [],
        "schedule_gamma": 0.1,
    },
}

# Keys a release config may hold beyond the defaults (paths, derived fields, script options).
_EXTRA_KEYS = {
    "": {"output_folder"},
    "dataset": {"json_file", "feat_folder", "file_prefix", "file_ext"},
    "model": {"input_dim", "num_classes", "max_seq_len", "train_cfg", "test_cfg"},
    "opt": {"early_stop_epochs"},
}

# Evaluation thresholds and classifier fixes the release's dataset classes hard-code.
_DATASET_TIOUS = {
    "thumos": [0.3, 0.4, 0.5, 0.6, 0.7],
    "anet": [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95],
    "epic": [0.1, 0.2, 0.3, 0.4, 0.5],
    "ego4d": [0.1, 0.2, 0.3, 0.4, 0.5],
}
# train.py overwrites train_cfg.head_empty_cls with the dataset's empty label ids: none for
# these datasets in the latest release (THUMOS14 keeps CliffDiving, a subset of Diving,
# through the multi-hot assignment; an older release emptied class 4 instead).
_DATASET_EMPTY_CLASSES = {"thumos": [], "anet": [], "epic": [], "ego4d": []}

# Name of the single class of a class-agnostic (num_classes == 1) release model.
AGNOSTIC_CLASS_NAME = "action"


# ================================================================================ config

def _merge_defaults(defaults: dict, config: dict) -> None:
    """The release's ``_merge``: fill keys missing from ``config`` with the defaults."""
    for key, value in defaults.items():
        if key in config:
            if isinstance(value, dict) and isinstance(config[key], dict):
                _merge_defaults(value, config[key])
        else:
            config[key] = copy.deepcopy(value)


def _check_keys(config: dict, source: str) -> None:
    for key in config:
        if key not in RELEASE_DEFAULTS and key not in _EXTRA_KEYS[""]:
            raise RgbtadError(f"{source}: unknown ActionFormer config key '{key}'")
    for section, defaults in RELEASE_DEFAULTS.items():
        if not isinstance(defaults, dict):
            continue
        values = config.get(section, {})
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise RgbtadError(f"{source}: ActionFormer config section '{section}' must be a mapping")
        allowed = set(defaults) | _EXTRA_KEYS.get(section, set())
        for key in values:
            if key not in allowed:
                raise RgbtadError(f"{source}: unknown ActionFormer config key '{section}.{key}'")


def read_release_config(path: str | Path) -> dict:
    """A release YAML merged over the release defaults, with the derived model fields."""
    path = Path(path)
    config = read_yaml_mapping(path, "config file", "an ActionFormer config must be a mapping")
    for section in list(config):
        if config[section] is None and isinstance(RELEASE_DEFAULTS.get(section), dict):
            config[section] = {}
    _check_keys(config, str(path))
    _merge_defaults(RELEASE_DEFAULTS, config)
    # _update_config of the release
    config["model"]["input_dim"] = config["dataset"]["input_dim"]
    config["model"]["num_classes"] = config["dataset"]["num_classes"]
    config["model"]["max_seq_len"] = config["dataset"]["max_seq_len"]
    config["model"]["train_cfg"] = config["train_cfg"]
    config["model"]["test_cfg"] = config["test_cfg"]
    return config


def _single_split(value: Any, key: str, source: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and len(value) == 1 and isinstance(value[0], str):
        return value[0]
    raise RgbtadError(f"{source}: '{key}' must name exactly one subset, got {value!r}")


def _config_values(release: dict, source: str) -> tuple[dict, list[str]]:
    """Release config -> nested rgbtad config values, plus warnings."""
    notes: list[str] = []
    ds, mdl, tr, te, opt, loader = (release["dataset"], release["model"], release["train_cfg"],
                                    release["test_cfg"], release["opt"], release["loader"])
    if release["model_name"] != "LocPointTransformer":
        raise RgbtadError(f"{source}: model_name '{release['model_name']}' is not supported "
                          "(only LocPointTransformer)")
    backbones = {"convTransformer": "transformer", "conv": "conv"}
    if mdl["backbone_type"] not in backbones:
        raise RgbtadError(f"{source}: model.backbone_type '{mdl['backbone_type']}' is not supported "
                          f"(supported: {', '.join(backbones)})")
    if mdl["fpn_type"] not in ("identity", "fpn"):
        raise RgbtadError(f"{source}: model.fpn_type '{mdl['fpn_type']}' is not supported")
    for key, value in (("dataset.input_dim", ds["input_dim"]), ("model.embd_dim", mdl["embd_dim"])):
        if isinstance(value, (list, tuple)):
            raise RgbtadError(f"{source}: {key} is a list (multi-input feature projection), "
                              "which rgbtad does not support")
    if te.get("ext_score_file"):
        notes.append(f"test_cfg.ext_score_file ({te['ext_score_file']}): external score fusion "
                     "is not part of the detector and is not imported")
    if opt.get("early_stop_epochs") is not None:
        notes.append("opt.early_stop_epochs is not supported; training runs all epochs")
    warmup_epochs = opt["warmup_epochs"] if opt["warmup"] else 0
    if not opt["warmup"]:
        notes.append("opt.warmup is false: imported as warmup_epochs 0 (rgbtad's cosine "
                     "schedule ends at 1e-8, the release's plain CosineAnnealingLR at 0)")
    devices = release["devices"]
    n_devices = len(devices) if isinstance(devices, (list, tuple)) and devices else 1
    if n_devices > 1:
        notes.append(f"{n_devices} devices: learning rate and loader workers scaled by "
                     f"{n_devices}, as the release's train.py does")
    dataset_name = str(release["dataset_name"])
    tious = _DATASET_TIOUS.get(dataset_name)
    if tious is None:
        notes.append(f"dataset_name '{dataset_name}' unknown: evaluation tIoU thresholds left at "
                     "rgbtad's default")
    crop = ds["crop_ratio"]
    windows = mdl["n_mha_win_size"]
    values = {
        "data": {
            "annotations": str(ds.get("json_file") or ""),
            "features": str(ds.get("feat_folder") or ""),
            "train_split": _single_split(release["train_split"], "train_split", source),
            "val_split": _single_split(release["val_split"], "val_split", source),
            "file_prefix": ds.get("file_prefix") or "",
            "file_ext": ds.get("file_ext") or "",
            "channels": "all",
            "input_dim": ds["input_dim"],
            "feat_stride": ds["feat_stride"],
            "num_frames": ds["num_frames"],
            "default_fps": ds["default_fps"],
            "downsample_rate": ds["downsample_rate"],
            "max_seq_len": ds["max_seq_len"],
            "trunc_thresh": ds["trunc_thresh"],
            "crop_ratio": list(crop) if crop is not None else None,
            "force_upsampling": bool(ds["force_upsampling"]),
            "num_workers": int(loader["num_workers"]) * n_devices,
        },
        "model": {
            "backbone": backbones[mdl["backbone_type"]],
            "num_classes": ds["num_classes"],
            "scale_factor": mdl["scale_factor"],
            "arch": list(mdl["backbone_arch"]),
            "embd_kernel_size": mdl["embd_kernel_size"],
            "embd_dim": mdl["embd_dim"],
            "embd_with_ln": mdl["embd_with_ln"],
            "n_head": mdl["n_head"],
            "n_mha_win_size": list(windows) if isinstance(windows, (list, tuple)) else windows,
            "fpn_type": mdl["fpn_type"],
            "fpn_dim": mdl["fpn_dim"],
            "fpn_with_ln": mdl["fpn_with_ln"],
            "fpn_start_level": mdl["fpn_start_level"],
            "head_dim": mdl["head_dim"],
            "head_num_layers": mdl["head_num_layers"],
            "head_kernel_size": mdl["head_kernel_size"],
            "head_with_ln": mdl["head_with_ln"],
            "max_buffer_len_factor": float(mdl["max_buffer_len_factor"]),
            "use_abs_pe": mdl["use_abs_pe"],
            "use_rel_pe": mdl["use_rel_pe"],
            "regression_range": [list(r) for r in mdl["regression_range"]],
        },
        "train": {
            "center_sample": tr["center_sample"],
            "center_sample_radius": tr["center_sample_radius"],
            "loss_weight": tr["loss_weight"],
            "cls_prior_prob": tr["cls_prior_prob"],
            "init_loss_norm": tr["init_loss_norm"],
            "label_smoothing": tr["label_smoothing"],
            # train.py replaces head_empty_cls with the dataset's empty label ids
            "head_empty_cls": _empty_classes(dataset_name, tr["head_empty_cls"], ds["num_classes"]),
            "dropout": tr["dropout"],
            "droppath": tr["droppath"],
            "clip_grad_l2norm": tr["clip_grad_l2norm"],
            "optimizer": opt["type"],
            "learning_rate": opt["learning_rate"] * n_devices,
            "momentum": opt["momentum"],
            "weight_decay": opt["weight_decay"],
            "batch_size": loader["batch_size"],
            "epochs": opt["epochs"],
            "warmup_epochs": warmup_epochs,
            "schedule": opt["schedule_type"],
            "schedule_steps": list(opt["schedule_steps"]),
            "schedule_gamma": opt["schedule_gamma"],
            "seed": release["init_rand_seed"],
        },
        "test": {
            "pre_nms_thresh": te["pre_nms_thresh"],
            "pre_nms_topk": te["pre_nms_topk"],
            "duration_thresh": te["duration_thresh"],
            "nms_method": te["nms_method"],
            "iou_threshold": te["iou_threshold"],
            "min_score": te["min_score"],
            "max_seg_num": te["max_seg_num"],
            "multiclass_nms": te["multiclass_nms"],
            "nms_sigma": te["nms_sigma"],
            "voting_thresh": te["voting_thresh"],
        },
    }
    if tious is not None:
        values["test"]["tiou_thresholds"] = tious
    return values, notes


def _empty_classes(dataset_name: str, configured: list, num_classes: int) -> list[int]:
    empty = _DATASET_EMPTY_CLASSES.get(dataset_name, configured) or []
    return [int(c) for c in empty if 0 <= int(c) < num_classes]


def config_from_release(release: dict, source: str = "ActionFormer config") -> tuple[Config, list[str]]:
    """An rgbtad ``Config`` from a merged release config; also returns warnings."""
    values, notes = _config_values(release, source)
    try:
        cfg = build_config(values)
    except RgbtadError as err:
        raise RgbtadError(f"{source}: {err}") from None
    return cfg, notes


# ================================================================================ weights

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
    target = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    unexpected, mismatched = [], []
    for key, value in release_state.items():
        name = key[len("module."):] if key.startswith("module.") else key
        mapped = map_release_key(name)
        if mapped is None or mapped[0] not in target:
            unexpected.append(key)
            continue
        ours, kind = mapped
        tensor = _reshape(value.detach().to(torch.float32), kind, target[ours].shape)
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
        raise RgbtadError(f"{source}: weights do not fit the config ({' | '.join(problems)})")
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


# ================================================================================ classes

def _resolve(path_text: str, config_path: Path) -> Path | None:
    path = Path(path_text)
    candidates = [path] if path.is_absolute() else [
        Path.cwd() / path, config_path.parent / path, config_path.parent.parent / path,
    ]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    return None


def _class_names(annotation_path: Path, num_classes: int) -> list[str]:
    """Class names in label_id order (the release's ``label_dict``)."""
    names = _label_ids_from_json(annotation_path)
    if names is None:
        # not an ActionFormer JSON with label ids: use rgbtad's annotation reader
        from rgbtad.data.annotations import load_annotations

        names = list(load_annotations(annotation_path).class_names)
    return _check_class_count(names, num_classes, annotation_path)


def _label_ids_from_json(path: Path) -> list[str] | None:
    """``label_id -> label`` of an ActionFormer JSON, or None when the file is not one."""
    if not path.is_file():
        return None
    data = read_json_file(path, "annotation")
    if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
        return None
    id_to_name: dict[int, str] = {}
    for vid, video in data["database"].items():
        for ann in (video or {}).get("annotations") or []:
            if not isinstance(ann, dict) or "label" not in ann or "label_id" not in ann:
                return None
            label_id, label = int(ann["label_id"]), str(ann["label"])
            known = id_to_name.setdefault(label_id, label)
            if known != label:
                raise RgbtadError(f"{path}: video '{vid}': label_id {label_id} is both "
                                  f"{known!r} and {label!r}")
    if not id_to_name:
        return None
    names = [id_to_name.get(i) for i in range(max(id_to_name) + 1)]
    gaps = [i for i, name in enumerate(names) if name is None]
    if gaps:
        raise RgbtadError(f"{path}: no annotation uses label_id(s) {gaps[:5]}")
    return names


def _check_class_count(names: list[str], num_classes: int, source: Path) -> list[str]:
    if num_classes == 1 and len(names) != 1:
        # class-agnostic release model (ActivityNet): every action is class 0
        return [AGNOSTIC_CLASS_NAME]
    if len(names) != num_classes:
        raise RgbtadError(f"{source}: defines {len(names)} classes but the checkpoint's config "
                          f"has num_classes {num_classes}")
    return names


# ================================================================================ import

def import_actionformer(config_path: str | Path, checkpoint_path: str | Path, out_dir: str | Path,
                        annotations: str | Path | None = None, *, overwrite: bool = False) -> None:
    """Write an rgbtad run directory from a release config + checkpoint. A folder that
    already holds a run is refused unless `overwrite`, which replaces that run's files
    once the import has succeeded."""
    from rgbtad.detection import build_detector
    from rgbtad.runs.run_dir import check_no_run, clear_run, save_run

    if not overwrite:
        check_no_run(out_dir)
    config_path = Path(config_path)
    release = read_release_config(config_path)
    cfg, notes = config_from_release(release, str(config_path))
    for note in notes:
        log.warning("%s: %s", config_path, note)

    if annotations is not None:
        ann_path = Path(annotations)
        if not ann_path.exists():
            raise RgbtadError(f"{ann_path}: annotation file not found")
    else:
        json_file = release["dataset"].get("json_file")
        if not json_file:
            raise RgbtadError(f"{config_path}: no dataset.json_file; give the annotation file "
                              "with --ann to name the classes")
        ann_path = _resolve(str(json_file), config_path)
        if ann_path is None:
            raise RgbtadError(f"{config_path}: annotation file '{json_file}' not found; give it "
                              "with --ann")
    cfg.data.annotations = str(ann_path)
    class_names = _class_names(ann_path, cfg.model.num_classes)

    model = build_detector(cfg, num_classes=cfg.model.num_classes)
    state = convert_state_dict(load_release_checkpoint(checkpoint_path), model, str(checkpoint_path))
    model.load_state_dict(state, strict=True)
    clear_run(out_dir)
    save_run(out_dir, cfg, class_names, state)
