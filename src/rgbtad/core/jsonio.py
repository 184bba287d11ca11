"""Reading JSON files with one-line errors that name the file (torch-free)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rgbtad.core.errors import RgbtadError


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    """`object_pairs_hook` that refuses a repeated key (plain `json` keeps the last value,
    silently dropping the first: a duplicated video in a results file loses detections)."""
    obj = dict(pairs)
    if len(obj) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return obj


def read_json_file(path: str | Path, what: str = "JSON") -> Any:
    """`json.load` of `path`; every failure is a one-line `RgbtadError` naming the file.
    `what` names the kind of file in the messages ("annotation", "results", ...).
    An object that repeats a key is an error naming the key."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            return json.load(handle, object_pairs_hook=_unique_keys)
    except FileNotFoundError:
        raise RgbtadError(f"{path}: {what} file not found") from None
    except IsADirectoryError:
        raise RgbtadError(f"{path}: is a folder, expected a {what} JSON file") from None
    except _DuplicateKey as err:
        raise RgbtadError(f"{path}: duplicate key {err.key!r} in a JSON object (each key may appear "
                          "once)") from None
    except json.JSONDecodeError as err:
        raise RgbtadError(f"{path}: not valid JSON ({err})") from None
    except UnicodeDecodeError:
        raise RgbtadError(f"{path}: not a UTF-8 text file") from None
    except OSError as err:
        raise RgbtadError(f"{path}: cannot read ({err.strerror or err})") from None
