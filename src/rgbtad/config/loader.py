"""Reading a training config: YAML files and dotted `--set key=value` overrides, merged in
order over the defaults (`rgbtad.config.sections`), with presets and legacy keys, then
validated (`rgbtad.config.rules`); and writing one back."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from rgbtad.config.rules import validate
from rgbtad.config.sections import Config
from rgbtad.config.typed import merge_section, nest, parse_override
from rgbtad.core.errors import RgbtadError
from rgbtad.core.yamlio import read_yaml_mapping

log = logging.getLogger(__name__)


# Named presets: a config mapping or --set override that chooses a value of the key also
# sets the listed keys of its section, except those it gives itself; later overrides win as
# usual (so `--set distill.c2ms_stage=cross_modal` over any config file applies the preset,
# and a saved run config, which lists every key, reads back unchanged).
# model.name: each detector family's default backbone. distill.c2ms_stage: C2MS-Net's
# effective weights (METHODS.md §3.4): "cross_modal" is their step 1 (teacher -> the same
# architecture + Rgb2Flow, initialised from the teacher), "cross_structure" their step 2
# (transformer -> conv, or conv -> depthwise-separable conv; student from scratch).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "model.name": {"actionformer": {"backbone": "transformer"}, "tridet": {"backbone": "sgp"},
                   "gtad": {"backbone": "gcnext"}, "tadtr": {"backbone": "deformable"}},
    "distill.c2ms_stage": {
        "cross_modal": {"hard_weight": 0.4, "input_weight": 3.0, "stem_weight": 0.0, "kd_reg_weight": 0.6,
                        "kd_cls_weight": 0.24, "temperature": 2.0, "init_from_teacher": True},
        "cross_structure": {"hard_weight": 0.4, "input_weight": 0.0, "stem_weight": 0.6, "kd_reg_weight": 0.6,
                            "kd_cls_weight": 0.024, "temperature": 2.0, "init_from_teacher": False},
    },
}

# Keys that configs written by earlier versions (run directories, configs/*.yaml, imported
# release configs) still hold but that nothing reads any more: accepted with a note and
# dropped, so those configs keep loading; each with why it has gone.
LEGACY_KEYS = {
    "model.max_buffer_len_factor": "points are generated for the actual input lengths (rgbtad.detection.points)",
}


def _without_legacy_keys(values: dict, where: str) -> dict:
    """`values` without the `LEGACY_KEYS` it holds (the caller's mapping is left as it is),
    one note logged for each."""
    if not isinstance(values, dict):  # refused by the merge, which names the problem
        return values
    kept = dict(values)
    for dotted, why in LEGACY_KEYS.items():
        section_name, name = dotted.split(".")
        section = kept.get(section_name)
        if isinstance(section, dict) and name in section:
            kept[section_name] = {k: v for k, v in section.items() if k != name}
            log.info("%sconfig key '%s' is no longer used and is ignored (%s)", where, dotted, why)
    return kept


def _dotted_keys(values: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in values.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        keys.add(dotted)
        if isinstance(value, dict):
            keys |= _dotted_keys(value, dotted)
    return keys


def _merge_with_presets(cfg: Config, values: dict, where: str) -> None:
    """Merge one source (a mapping or an override); where it chooses a preset (`PRESETS`),
    the preset fills in the keys that the source does not give."""
    values = _without_legacy_keys(values, where)
    merge_section(cfg, values, "")
    given = _dotted_keys(values)
    for dotted, presets in PRESETS.items():
        if dotted not in given:
            continue
        section_name, name = dotted.split(".")
        section = getattr(cfg, section_name)
        for key, value in presets.get(getattr(section, name), {}).items():
            if f"{section_name}.{key}" not in given:
                setattr(section, key, value)


def _build(values: dict, overrides: list[str], where: str) -> Config:
    cfg = Config()
    _merge_with_presets(cfg, values, where)
    for text in overrides:
        key, value = parse_override(text)
        _merge_with_presets(cfg, nest(key, value), "")
    validate(cfg)
    return cfg


def build_config(values: dict | None = None, overrides: list[str] | None = None) -> Config:
    """Build a validated Config from a mapping plus dotted `key=value` overrides, applied in
    order (presets: see `PRESETS`; legacy keys: `LEGACY_KEYS`)."""
    return _build(values or {}, overrides or [], "")


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config file (or only the defaults when `path` is None)."""
    if path is None:
        return build_config({}, overrides)
    path = Path(path)
    values = read_yaml_mapping(path, "config file", "a config must be a mapping of sections", empty_ok=True)
    try:
        return _build(values, overrides or [], f"{path}: ")
    except RgbtadError as err:
        raise RgbtadError(f"{path}: {err}") from None


def save_config(cfg: Config, path: str | Path) -> None:
    from rgbtad.core.atomic import write_text

    write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
