"""Reading YAML mapping files with one-line errors that name the file."""

from __future__ import annotations

from pathlib import Path

import yaml

from rgbtad.errors import RgbtadError


def read_yaml_mapping(path: str | Path, what: str, shape: str, *, empty_ok: bool = False) -> dict:
    """`yaml.safe_load` of `path`, which must hold a mapping; every failure is a one-line
    `RgbtadError` naming the file. `what` names the file in "not found" ("config file"),
    `shape` says what a valid file is ("a config must be a mapping of sections").
    `empty_ok`: an empty file reads as ``{}``."""
    path = Path(path)
    if not path.is_file():
        raise RgbtadError(f"{path}: {what} not found")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise RgbtadError(f"{path}: not valid YAML ({err})") from None
    if values is None and empty_ok:
        values = {}
    if not isinstance(values, dict):
        raise RgbtadError(f"{path}: {shape}")
    return values
