"""Release config -> rgbtad config, for the import of official ActionFormer releases
(`rgbtad.compat.actionformer`).

The YAML is merged over the release's defaults (``libs/core/config.py``: missing keys take
the default, nested sections merge key by key) and the release's derived fields are applied
(``model.input_dim`` / ``num_classes`` / ``max_seq_len`` come from ``dataset``; the model
gets ``train_cfg`` / ``test_cfg``). Every release field maps to one rgbtad field (one table
per rgbtad section: ``_data_values``, ``_model_sections``, ``_train_values``,
``_test_values``). Unknown keys and settings rgbtad does not implement (another
``model_name`` or backbone, multi-input projections, several splits) are errors; settings
that only affect the release's training scripts are reported as warnings; the score fusion
file (``test_cfg.ext_score_file``) becomes ``test.ext_score_file``. Two pieces of the
release's training script are applied too: the learning rate and the loader workers are
multiplied by the number of ``devices``, and the classifier's empty classes come from the
dataset (none for the release's datasets).

Forks of the release (TriDet: `rgbtad.compat.tridet_config`) keep this format with their
own defaults and model keys; a `ReleaseFormat` says what differs, and `read_release_config`
and `release_config` serve them too.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rgbtad.config import Config, build_config
from rgbtad.core.errors import RgbtadError
from rgbtad.core.yamlio import read_yaml_mapping

__all__ = ["ACTIONFORMER", "RELEASE_DEFAULTS", "ReleaseFormat", "config_from_release", "read_release_config",
           "release_config"]

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


@dataclass(frozen=True)
class ReleaseFormat:
    """The config format of one release: its name (in messages), defaults, the keys allowed
    beyond them (per section, ``""`` the top level), the one ``model_name`` and the
    ``backbone_type``s rgbtad implements (-> ``model.backbone``), the tIoU thresholds and
    empty classes of its datasets, and the warning for ``opt.warmup: false`` (None: none)."""

    name: str
    defaults: dict[str, Any]
    extra_keys: dict[str, set[str]]
    model_name: str
    backbones: dict[str, str]
    dataset_tious: dict[str, list[float]]
    dataset_empty_classes: dict[str, list[int]]
    no_warmup_note: str | None


ACTIONFORMER = ReleaseFormat(
    name="ActionFormer", defaults=RELEASE_DEFAULTS, extra_keys=_EXTRA_KEYS, model_name="LocPointTransformer",
    backbones={"convTransformer": "transformer", "conv": "conv"}, dataset_tious=_DATASET_TIOUS,
    dataset_empty_classes=_DATASET_EMPTY_CLASSES,
    no_warmup_note="opt.warmup is false: imported as warmup_epochs 0 (rgbtad's cosine schedule ends at 1e-8, "
                   "the release's plain CosineAnnealingLR at 0)",
)


# ================================================================================ release config

def _merge_defaults(defaults: dict, config: dict) -> None:
    """The release's ``_merge``: fill keys missing from ``config`` with the defaults."""
    for key, value in defaults.items():
        if key in config:
            if isinstance(value, dict) and isinstance(config[key], dict):
                _merge_defaults(value, config[key])
        else:
            config[key] = copy.deepcopy(value)


def _check_keys(config: dict, source: str, fmt: ReleaseFormat) -> None:
    for key in config:
        if key not in fmt.defaults and key not in fmt.extra_keys[""]:
            raise RgbtadError(f"{source}: unknown {fmt.name} config key '{key}'")
    for section, defaults in fmt.defaults.items():
        if not isinstance(defaults, dict):
            continue
        values = config.get(section, {})
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise RgbtadError(f"{source}: {fmt.name} config section '{section}' must be a mapping")
        allowed = set(defaults) | fmt.extra_keys.get(section, set())
        for key in values:
            if key not in allowed:
                raise RgbtadError(f"{source}: unknown {fmt.name} config key '{section}.{key}'")


def read_release_config(path: str | Path, fmt: ReleaseFormat = ACTIONFORMER) -> dict:
    """A release YAML merged over the release defaults, with the derived model fields."""
    path = Path(path)
    article = "an" if fmt.name[0] in "AEIOU" else "a"
    config = read_yaml_mapping(path, "config file", f"{article} {fmt.name} config must be a mapping")
    for section in list(config):
        if config[section] is None and isinstance(fmt.defaults.get(section), dict):
            config[section] = {}
    _check_keys(config, str(path), fmt)
    _merge_defaults(fmt.defaults, config)
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


# ================================================================================ rgbtad values

def _config_values(release: dict, fmt: ReleaseFormat, model_sections: Callable[[dict], dict],
                   source: str) -> tuple[dict, list[str]]:
    """Release config -> nested rgbtad config values, plus warnings: ``data``, ``train`` and
    ``test`` from the sections every format shares, the model's from `model_sections`."""
    _check_supported(release, fmt, source)
    notes = _notes(release, fmt)
    n_devices = _device_count(release["devices"])
    tious = fmt.dataset_tious.get(str(release["dataset_name"]))
    values = {
        "data": _data_values(release, n_devices, source),
        **model_sections(release),
        "train": _train_values(release, n_devices, fmt),
        "test": _test_values(release["test_cfg"]),
    }
    if tious is not None:
        values["test"]["tiou_thresholds"] = tious
    return values, notes


def _check_supported(release: dict, fmt: ReleaseFormat, source: str) -> None:
    """Raise for a model rgbtad does not implement."""
    ds, mdl = release["dataset"], release["model"]
    if release["model_name"] != fmt.model_name:
        raise RgbtadError(f"{source}: model_name '{release['model_name']}' is not supported "
                          f"(only {fmt.model_name})")
    if mdl["backbone_type"] not in fmt.backbones:
        raise RgbtadError(f"{source}: model.backbone_type '{mdl['backbone_type']}' is not supported "
                          f"(supported: {', '.join(fmt.backbones)})")
    if mdl["fpn_type"] not in ("identity", "fpn"):
        raise RgbtadError(f"{source}: model.fpn_type '{mdl['fpn_type']}' is not supported")
    for key, value in (("dataset.input_dim", ds["input_dim"]), ("model.embd_dim", mdl["embd_dim"])):
        if isinstance(value, (list, tuple)):
            raise RgbtadError(f"{source}: {key} is a list (multi-input feature projection), "
                              "which rgbtad does not support")


def _notes(release: dict, fmt: ReleaseFormat) -> list[str]:
    """Warnings for release settings that are not imported or are imported changed."""
    notes: list[str] = []
    opt = release["opt"]
    if opt.get("early_stop_epochs") is not None:
        notes.append("opt.early_stop_epochs is not supported; training runs all epochs")
    if not opt["warmup"] and fmt.no_warmup_note:
        notes.append(fmt.no_warmup_note)
    n_devices = _device_count(release["devices"])
    if n_devices > 1:
        notes.append(f"{n_devices} devices: learning rate and loader workers scaled by "
                     f"{n_devices}, as the release's train.py does")
    dataset_name = str(release["dataset_name"])
    if fmt.dataset_tious.get(dataset_name) is None:
        notes.append(f"dataset_name '{dataset_name}' unknown: evaluation tIoU thresholds left at "
                     "rgbtad's default")
    return notes


def _device_count(devices: Any) -> int:
    return len(devices) if isinstance(devices, (list, tuple)) and devices else 1


def _data_values(release: dict, n_devices: int, source: str) -> dict:
    ds, loader = release["dataset"], release["loader"]
    crop = ds["crop_ratio"]
    return {
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
    }


def _model_sections(release: dict) -> dict:
    mdl, ds = release["model"], release["dataset"]
    windows = mdl["n_mha_win_size"]
    return {"model": {
        "backbone": ACTIONFORMER.backbones[mdl["backbone_type"]],
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
        "use_abs_pe": mdl["use_abs_pe"],
        "use_rel_pe": mdl["use_rel_pe"],
        "regression_range": [list(r) for r in mdl["regression_range"]],
    }}


def _train_values(release: dict, n_devices: int, fmt: ReleaseFormat) -> dict:
    tr, opt, ds, loader = release["train_cfg"], release["opt"], release["dataset"], release["loader"]
    return {
        "center_sample": tr["center_sample"],
        "center_sample_radius": tr["center_sample_radius"],
        "loss_weight": tr["loss_weight"],
        "cls_prior_prob": tr["cls_prior_prob"],
        "init_loss_norm": tr["init_loss_norm"],
        "label_smoothing": tr["label_smoothing"],
        # train.py replaces head_empty_cls with the dataset's empty label ids
        "head_empty_cls": _empty_classes(fmt, str(release["dataset_name"]), tr["head_empty_cls"], ds["num_classes"]),
        "dropout": tr["dropout"],
        "droppath": tr["droppath"],
        "clip_grad_l2norm": tr["clip_grad_l2norm"],
        "optimizer": opt["type"],
        "learning_rate": opt["learning_rate"] * n_devices,
        "momentum": opt["momentum"],
        "weight_decay": opt["weight_decay"],
        "batch_size": loader["batch_size"],
        "epochs": opt["epochs"],
        "warmup_epochs": opt["warmup_epochs"] if opt["warmup"] else 0,
        "schedule": opt["schedule_type"],
        "schedule_steps": list(opt["schedule_steps"]),
        "schedule_gamma": opt["schedule_gamma"],
        "seed": release["init_rand_seed"],
    }


def _test_values(te: dict) -> dict:
    return {
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
        # fused as the release's postprocess_results: top 200 detections x top 2 classes, sqrt
        "ext_score_file": te["ext_score_file"] or None,
    }


def _empty_classes(fmt: ReleaseFormat, dataset_name: str, configured: list, num_classes: int) -> list[int]:
    empty = fmt.dataset_empty_classes.get(dataset_name, configured) or []
    return [int(c) for c in empty if 0 <= int(c) < num_classes]


def release_config(release: dict, fmt: ReleaseFormat, model_sections: Callable[[dict], dict],
                   source: str) -> tuple[Config, list[str]]:
    """An rgbtad ``Config`` from a merged release config of format `fmt`, the model's
    sections from `model_sections(release)` (checked to be supported); also returns warnings."""
    values, notes = _config_values(release, fmt, model_sections, source)
    try:
        cfg = build_config(values)
    except RgbtadError as err:
        raise RgbtadError(f"{source}: {err}") from None
    return cfg, notes


def config_from_release(release: dict, source: str = "ActionFormer config") -> tuple[Config, list[str]]:
    """An rgbtad ``Config`` from a merged ActionFormer release config; also returns warnings."""
    return release_config(release, ACTIONFORMER, _model_sections, source)
