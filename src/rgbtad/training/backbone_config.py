"""The typed config of a snippet-backbone training (`rgbtad train-backbone CONFIG`).

One YAML mapping (examples: ``configs/backbone_*.yaml``); every key has a default, a config
file lists what differs. Unknown keys (with a did-you-mean), wrong types and invalid values
are one-line `RgbtadError`s naming the key, and the file when read from one; dotted
``--set key=value`` overrides are merged after the file (`rgbtad.config.merge_values`).
Paths are read relative to the working directory, as in detector configs.

=====================  =====================================================================
key                    meaning
=====================  =====================================================================
annotations            annotation file (`rgbtad.data.annotations.load_annotations`)
videos                 folder of ``<video_id>.mp4`` (or .avi, .mkv, .webm, .mov)
backbone               registry name (`rgbtad.backbones.create_backbone`), random initialisation
backbone_kwargs        keyword arguments of the backbone factory
snippets               a `rgbtad.video.snippets.SnippetSpec` section (modality, frames, stride,
                       fps, size, flow_method, flow_bound, dis_preset): those of the extraction
                       that will use the weights; ``stride`` only spaces the validation snippets
flow_dir               flow stored by `rgbtad motion` (read for modality flow, else unused; null:
                       computed here)
subset, val_subset     training subset; validation subset (null: no validation report)
epochs                 null: `DEFAULT_EPOCHS` of the modality
per_class              training snippets of every class per epoch
background_factor      background snippets per epoch, times ``per_class``
batch_size, lr, weight_decay, dropout, augment, seed
bn_batches             batches for the precise batch-norm statistics after training (0: none)
init_from              a backbone run directory (same backbone, modality, options) to start from
distill.teacher        a backbone run directory: the frozen teacher (null: no distillation)
distill.mode           ``decomposed`` or ``conventional``
distill.weight         weight of the logit term (softmax KL at ``distill.temperature``)
distill.mimic_weight   weight of the feature term (MSE)
precision              ``auto``, ``fp32`` or ``bf16`` (`rgbtad.core.precision`)
threads                torch CPU threads during the training (null: leave as is)
=====================  =====================================================================
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rgbtad.config import merge_values
from rgbtad.core.errors import RgbtadError
from rgbtad.core.precision import PRECISIONS
from rgbtad.core.ranges import describe_range, in_range
from rgbtad.core.yamlio import read_yaml_mapping
from rgbtad.video.snippets import SnippetSpec

#: Epochs when ``epochs`` is null: an appearance backbone learns more slowly from scratch than
#: a motion one (measured on the synthetic benchmark).
DEFAULT_EPOCHS = {"rgb": 20, "flow": 10, "tg": 10}
DISTILL_MODES = ("decomposed", "conventional")


@dataclass
class BackboneDistillConfig:
    """Cross-modal distillation from a frozen snippet backbone (`rgbtad.training.backbone_task`)."""

    teacher: str | None = None
    mode: str = "decomposed"
    weight: float = 1.0
    temperature: float = 2.0
    mimic_weight: float = 1.0


@dataclass
class BackboneConfig:
    """What `rgbtad.training.backbones.train_backbone` trains (module doc)."""

    annotations: str = ""
    videos: str = ""
    backbone: str = "tsm_tiny"
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    snippets: SnippetSpec = field(default_factory=SnippetSpec)
    flow_dir: str | None = None
    subset: str = "train"
    val_subset: str | None = None
    epochs: int | None = None
    per_class: int = 64
    background_factor: float = 2.0
    batch_size: int = 32
    lr: float = 4e-3
    weight_decay: float = 1e-4
    dropout: float = 0.3
    augment: bool = True
    seed: int = 0
    bn_batches: int = 16
    init_from: str | None = None
    distill: BackboneDistillConfig = field(default_factory=BackboneDistillConfig)
    precision: str = "auto"
    threads: int | None = None

    @property
    def modality(self) -> str:
        return self.snippets.modality

    @property
    def total_epochs(self) -> int:
        return int(self.epochs) if self.epochs is not None else DEFAULT_EPOCHS[self.modality]

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists for tuples), as written to ``config.yaml``."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


RANGES = {
    "epochs": "(0, inf)",
    "per_class": "(0, inf)",
    "background_factor": "[0, inf)",
    "batch_size": "(0, inf)",
    "lr": "[0, inf)",
    "weight_decay": "[0, inf)",
    "dropout": "[0, 1)",
    "seed": "[0, inf)",
    "bn_batches": "[0, inf)",
    "threads": "(0, inf)",
    "distill.weight": "[0, inf)",
    "distill.temperature": "(0, inf)",
    "distill.mimic_weight": "[0, inf)",
}


def _validate(cfg: BackboneConfig) -> None:
    for dotted, interval in RANGES.items():
        value = cfg
        for part in dotted.split("."):
            value = getattr(value, part)
        if value is not None and not in_range(value, interval):
            raise RgbtadError(f"config key '{dotted}' must be {describe_range(interval)}, got {value}")
    if cfg.distill.mode not in DISTILL_MODES:
        raise RgbtadError(f"config key 'distill.mode': unknown distill mode {cfg.distill.mode!r}; "
                          f"choose from {', '.join(DISTILL_MODES)}")
    if cfg.precision not in PRECISIONS:
        raise RgbtadError(f"config key 'precision': {cfg.precision!r} is not one of {', '.join(PRECISIONS)}")
    for key in ("annotations", "videos"):
        if not getattr(cfg, key):
            raise RgbtadError(f"config key '{key}' is not set")


def build_backbone_config(values: dict | None = None, overrides: list[str] | None = None) -> BackboneConfig:
    """A validated `BackboneConfig` from a mapping plus dotted ``key=value`` overrides."""
    cfg = BackboneConfig()
    merge_values(cfg, values, overrides)
    _validate(cfg)
    return cfg


def load_backbone_config(path: str | Path, overrides: list[str] | None = None) -> BackboneConfig:
    """Read a backbone-training config file; errors name the file."""
    path = Path(path)
    values = read_yaml_mapping(path, "config file", "a backbone config must be a mapping", empty_ok=True)
    try:
        return build_backbone_config(values, overrides)
    except RgbtadError as err:
        raise RgbtadError(f"{path}: {err}") from None


def save_backbone_config(cfg: BackboneConfig, path: str | Path) -> None:
    import yaml

    from rgbtad.core.atomic import write_text

    write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
