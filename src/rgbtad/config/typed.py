"""The typed-dataclass machinery under every config: merge a mapping and dotted
`key=value` overrides into a tree of dataclasses, converting each value to its field's type
where that is lossless; an unknown key (with a did-you-mean) or a wrong type is an
`RgbtadError` that names the dotted key."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any

import yaml

from rgbtad.core.errors import RgbtadError
from rgbtad.core.yamlio import load_yaml


def to_plain(obj: Any) -> Any:
    """`obj` with every tuple a list (what YAML writes and reads back)."""
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    return obj


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check `value` against a type annotation, converting where it is lossless."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return _coerce(value, option, key)
            except RgbtadError:
                continue
        raise RgbtadError(f"config key '{key}': {value!r} is not a valid {_type_name(annotation)}")
    if annotation is type(None):
        if value is None:
            return None
        raise RgbtadError(f"config key '{key}': expected null, got {value!r}")
    if annotation is Any:
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            # PyYAML reads exponents without a dot (1e-4) as strings (YAML 1.1)
            try:
                return float(value)
            except ValueError:
                pass
    elif annotation is str:
        if isinstance(value, str):
            return value
    elif annotation is dict or origin is dict:
        if isinstance(value, dict):
            return dict(value)
    elif origin in (list, tuple):
        if isinstance(value, (list, tuple)):
            if origin is tuple and args and args[-1] is not Ellipsis:
                if len(value) != len(args):
                    raise RgbtadError(
                        f"config key '{key}': expected {len(args)} values, got {len(value)}"
                    )
                return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
            item_type = args[0] if args else Any
            converted = [_coerce(v, item_type, f"{key}[{i}]") for i, v in enumerate(value)]
            return tuple(converted) if origin is tuple else converted
    raise RgbtadError(f"config key '{key}': expected {_type_name(annotation)}, got {value!r}")


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _known_keys(section: Any, values: dict, prefix: str):
    """(key, value, dotted key) of `values`, each a field of the dataclass `section`."""
    if not isinstance(values, dict):
        raise RgbtadError(f"config section '{prefix}' must be a mapping, got {values!r}")
    names = [f.name for f in dataclasses.fields(section)]
    for key, value in values.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{prefix + '.' if prefix else ''}{close[0]}'?)" if close else ""
            raise RgbtadError(f"unknown config key '{dotted}'{hint}")
        yield key, value, dotted


def merge_section(section: Any, values: dict, prefix: str) -> None:
    """Merge the mapping `values` into the dataclass `section` (whose dotted key is `prefix`)."""
    hints = typing.get_type_hints(type(section))
    for key, value, dotted in _known_keys(section, values, prefix):
        current = getattr(section, key)
        if dataclasses.is_dataclass(current) and current.__dataclass_params__.frozen:
            setattr(section, key, _replaced(current, value, dotted))
        elif dataclasses.is_dataclass(current):
            merge_section(current, value, dotted)
        else:
            setattr(section, key, _coerce(value, hints[key], dotted))


def _replaced(frozen: Any, values: dict, prefix: str) -> Any:
    """A frozen dataclass section (a value type, e.g. `SnippetSpec`): a copy with `values`
    merged in, validated by the type itself."""
    hints = typing.get_type_hints(type(frozen))
    changes = {key: _coerce(value, hints[key], dotted) for key, value, dotted in _known_keys(frozen, values, prefix)}
    try:
        return dataclasses.replace(frozen, **changes)
    except RgbtadError as err:
        raise RgbtadError(f"config section '{prefix}': {err}") from None


def merge_values(target: Any, values: dict | None = None, overrides: list[str] | None = None) -> None:
    """Merge a mapping, then dotted `key=value` overrides, into the dataclass tree `target`
    with this module's checks (unknown keys with a did-you-mean, types); for configs other
    than `Config` (e.g. `rgbtad.training.backbone_config`), which validate their values
    themselves."""
    merge_section(target, values or {}, "")
    for text in overrides or []:
        key, value = parse_override(text)
        merge_section(target, nest(key, value), "")


def parse_override(text: str) -> tuple[str, Any]:
    """Parse one `key=value` override; the value is read as YAML (so 1e-4, [1,2], true work)."""
    if "=" not in text:
        raise RgbtadError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise RgbtadError(f"override {text!r}: value is not valid YAML ({err})") from None
    return key.strip(), value


def nest(key: str, value: Any) -> dict:
    """The mapping that the dotted `key` = `value` stands for: ``a.b=1`` -> ``{"a": {"b": 1}}``."""
    out: dict = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out
