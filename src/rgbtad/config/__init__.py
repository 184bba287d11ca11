"""One typed, validated configuration schema.

A config is a tree of dataclasses (`sections`). YAML files and dotted `--set key=value`
overrides are merged into it (`loader`, on the machinery of `typed`); an unknown key, a wrong
type or an invalid value (`rules`) is an `RgbtadError` that names the dotted key. Defaults are
the THUMOS14 settings of the official ActionFormer release, so a config file only lists what
differs.
"""

from .loader import LEGACY_KEYS, PRESETS, build_config, load_config, save_config
from .rules import RANGES
from .sections import Config, DataConfig, DistillConfig, ModelConfig, TestConfig, TrainConfig, TriDetConfig
from .typed import merge_values, parse_override

__all__ = [
    "Config",
    "DataConfig",
    "DistillConfig",
    "LEGACY_KEYS",
    "ModelConfig",
    "PRESETS",
    "RANGES",
    "TestConfig",
    "TrainConfig",
    "TriDetConfig",
    "build_config",
    "load_config",
    "merge_values",
    "parse_override",
    "save_config",
]
