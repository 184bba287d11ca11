"""Release config -> rgbtad config, for the import of official TriDet releases
(`rgbtad.compat.tridet_import`).

TriDet's release (dingfengshi/TriDet) is a fork of ActionFormer's and keeps its config
format: the YAML is merged over the release's defaults and its data, training and test
sections map as ActionFormer's do (`rgbtad.compat.actionformer_config`, with the same
errors and warnings). What differs is here: the defaults (``libs/core/config.py``: its own
``model`` section, ``opt.eta_min``), ``model_name: TriDet`` with the ``SGP`` or ``conv``
backbone, and the model keys, shared anatomy -> ``model.*`` (``model.name: tridet``) and
TriDet's own -> ``tridet.*`` (``n_sgp_win_size`` -> ``sgp_win_size``, ``k`` -> ``sgp_k``,
``boudary_kernel_size`` -> ``boundary_kernel_size``). ``model.sgp_mlp_dim`` has no release
default and must be given. Warnings, beyond ActionFormer's: an ``opt.eta_min`` other than
rgbtad's 1e-8 and HACS's feature reader (``dataset.backbone_type``), neither imported.
``model.max_buffer_len_factor`` is not carried over (as for ActionFormer) nor is
``train_cfg.dropout`` used (TriDet has no dropout).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from rgbtad.compat.actionformer_config import (
    ACTIONFORMER,
    RELEASE_DEFAULTS,
    ReleaseFormat,
    read_release_config,
    release_config,
)
from rgbtad.config import Config
from rgbtad.core.errors import RgbtadError
from rgbtad.training.optim import ETA_MIN

__all__ = ["TRIDET", "TRIDET_DEFAULTS", "read_tridet_config", "tridet_config_from_release"]

# The release's defaults (libs/core/config.py of dingfengshi/TriDet), as data: ActionFormer's
# but for the model name, the model section and the cosine schedule's floor (opt.eta_min).
TRIDET_DEFAULTS: dict[str, Any] = {
    **copy.deepcopy(RELEASE_DEFAULTS),
    "model_name": "TriDet",
    "model": {
        "backbone_type": "SGP",
        "fpn_type": "identity",
        "backbone_arch": [2, 2, 5],
        "scale_factor": 2,
        "regression_range": [[0, 4], [4, 8], [8, 16], [16, 32], [32, 64], [64, 10000]],
        "n_sgp_win_size": -1,
        "embd_kernel_size": 3,
        "embd_dim": 512,
        "embd_with_ln": True,
        "fpn_dim": 512,
        "fpn_with_ln": True,
        "head_dim": 512,
        "head_kernel_size": 3,
        "boudary_kernel_size": 3,
        "head_num_layers": 3,
        "head_with_ln": True,
        "max_buffer_len_factor": 6.0,
        "use_abs_pe": False,
        "use_trident_head": True,
        "downsample_type": "max",
        "k": 1.5,
        "init_conv_vars": 0,
        "num_bins": 16,
        "iou_weight_power": 1.0,
        "input_noise": 0,
    },
    "opt": {**copy.deepcopy(RELEASE_DEFAULTS["opt"]), "eta_min": 1e-8},
}

# Keys beyond the defaults: ActionFormer's, the HACS loader's feature format, and
# sgp_mlp_dim, which the release needs but has no default for.
_EXTRA_KEYS = {**ACTIONFORMER.extra_keys,
               "dataset": ACTIONFORMER.extra_keys["dataset"] | {"backbone_type"},
               "model": ACTIONFORMER.extra_keys["model"] | {"sgp_mlp_dim"}}
# The dataset classes are ActionFormer's (its Ego4D one aside) and HACS, evaluated as ActivityNet;
# train.py's empty classes: none, as for ActionFormer's.
_DATASET_TIOUS = {**{name: ACTIONFORMER.dataset_tious[name] for name in ("thumos", "anet", "epic")},
                  "hacs": ACTIONFORMER.dataset_tious["anet"]}

TRIDET = ReleaseFormat(
    name="TriDet", defaults=TRIDET_DEFAULTS, extra_keys=_EXTRA_KEYS, model_name="TriDet",
    backbones={"SGP": "sgp", "conv": "conv"}, dataset_tious=_DATASET_TIOUS,
    dataset_empty_classes={name: [] for name in _DATASET_TIOUS},
    # without warmup the release anneals to eta_min as rgbtad does (another floor is noted)
    no_warmup_note=None,
)

# TriDet's own model keys: release name -> `tridet` section key
_OWN_KEYS = {
    "sgp_mlp_dim": "sgp_mlp_dim", "k": "sgp_k", "init_conv_vars": "init_conv_vars",
    "downsample_type": "downsample_type", "input_noise": "input_noise", "boudary_kernel_size": "boundary_kernel_size",
    "use_trident_head": "use_trident_head", "num_bins": "num_bins", "iou_weight_power": "iou_weight_power",
}
# the anatomy keys both families share, named alike in both releases and in rgbtad's `model`
_SHARED_KEYS = ("scale_factor", "embd_kernel_size", "embd_dim", "embd_with_ln", "fpn_type", "fpn_dim", "fpn_with_ln",
                "head_dim", "head_num_layers", "head_kernel_size", "head_with_ln", "use_abs_pe")


def read_tridet_config(path: str | Path) -> dict:
    """A TriDet release YAML merged over the release defaults, with the derived model fields."""
    config = read_release_config(path, TRIDET)
    if "sgp_mlp_dim" not in config["model"]:
        raise RgbtadError(f"{path}: TriDet config key 'model.sgp_mlp_dim' is missing (the release has no "
                          "default for it)")
    return config


def _model_sections(release: dict) -> dict:
    mdl, ds = release["model"], release["dataset"]
    windows = mdl["n_sgp_win_size"]
    model = {
        "name": "tridet",
        "backbone": TRIDET.backbones[mdl["backbone_type"]],
        "num_classes": ds["num_classes"],
        "arch": list(mdl["backbone_arch"]),
        **{key: mdl[key] for key in _SHARED_KEYS},
        "regression_range": [list(r) for r in mdl["regression_range"]],
    }
    tridet = {ours: mdl[theirs] for theirs, ours in _OWN_KEYS.items()}
    tridet["sgp_win_size"] = list(windows) if isinstance(windows, (list, tuple)) else windows
    return {"model": model, "tridet": tridet}


def _notes(release: dict) -> list[str]:
    """Warnings for the TriDet settings that are not imported."""
    notes = []
    eta_min = release["opt"]["eta_min"]
    if eta_min != ETA_MIN:
        notes.append(f"opt.eta_min {eta_min} is not supported: rgbtad's cosine schedule ends at {ETA_MIN}")
    feature_reader = release["dataset"].get("backbone_type")
    if feature_reader is not None:
        notes.append(f"dataset.backbone_type ({feature_reader}): the release's HACS feature reader (per-split "
                     "folders, SlowFast pickles) is not imported; data.features is read as rgbtad's one "
                     "<prefix><video_id><ext> array per video")
    return notes


def tridet_config_from_release(release: dict, source: str = "TriDet config") -> tuple[Config, list[str]]:
    """An rgbtad ``Config`` (``model.name: tridet``) from a merged TriDet release config; also
    returns warnings."""
    cfg, notes = release_config(release, TRIDET, _model_sections, source)
    return cfg, notes + _notes(release)
