"""Reading YAML with one-line errors that name the file, and no repeated keys."""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml

from rgbtad.core.errors import RgbtadError


class DuplicateKeyError(yaml.YAMLError):
    """A mapping repeats a key (plain PyYAML keeps the last one: a second `data:` section
    would silently replace the first)."""

    def __init__(self, key: Any, line: int) -> None:
        super().__init__(f"duplicate key {key!r} at line {line}")


class _UniqueKeyLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a mapping with a repeated key (merge keys ``<<`` may
    still be overridden, as YAML intends)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                if isinstance(key, Hashable):  # unhashable keys: SafeLoader's own error
                    if key in seen:
                        raise DuplicateKeyError(key, key_node.start_mark.line + 1)
                    seen.add(key)
        return super().construct_mapping(node, deep)


def load_yaml(text: str) -> Any:
    """`yaml.safe_load` of `text`, refusing repeated keys (`DuplicateKeyError`, a
    `yaml.YAMLError`)."""
    return yaml.load(text, Loader=_UniqueKeyLoader)


def _one_line(err: yaml.YAMLError) -> str:
    """A YAML error as one line (PyYAML's messages span several, with a source excerpt)."""
    if isinstance(err, yaml.MarkedYAMLError) and err.problem:
        mark = err.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        return f"{err.problem}{where}"
    return " ".join(str(err).split())


def read_yaml_mapping(path: str | Path, what: str, shape: str, *, empty_ok: bool = False) -> dict:
    """`load_yaml` of `path`, which must hold a mapping; every failure is a one-line
    `RgbtadError` naming the file. `what` names the file in "not found" ("config file"),
    `shape` says what a valid file is ("a config must be a mapping of sections").
    `empty_ok`: an empty file reads as ``{}``."""
    path = Path(path)
    if not path.is_file():
        raise RgbtadError(f"{path}: {what} not found")
    try:
        values = load_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise RgbtadError(f"{path}: not a UTF-8 text file ({err.reason} at byte {err.start})") from None
    except yaml.YAMLError as err:
        raise RgbtadError(f"{path}: not valid YAML ({_one_line(err)})") from None
    if values is None and empty_ok:
        values = {}
    if not isinstance(values, dict):
        raise RgbtadError(f"{path}: {shape}")
    return values
