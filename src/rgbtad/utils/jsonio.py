"""Reading JSON files with one-line errors that name the file (torch-free)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rgbtad.errors import RgbtadError


def read_json_file(path: str | Path, what: str = "JSON") -> Any:
    """`json.load` of `path`; every failure is a one-line `RgbtadError` naming the file.
    `what` names the kind of file in the messages ("annotation", "results", ...)."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise RgbtadError(f"{path}: {what} file not found") from None
    except IsADirectoryError:
        raise RgbtadError(f"{path}: is a folder, expected a {what} JSON file") from None
    except json.JSONDecodeError as err:
        raise RgbtadError(f"{path}: not valid JSON ({err})") from None
    except UnicodeDecodeError:
        raise RgbtadError(f"{path}: not a UTF-8 text file") from None
    except OSError as err:
        raise RgbtadError(f"{path}: cannot read ({err.strerror or err})") from None
