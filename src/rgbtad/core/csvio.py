"""Reading CSV files a user hands us."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from rgbtad.core.errors import RgbtadError


@contextmanager
def open_csv(path: str | Path) -> Iterator[TextIO]:
    """`path` opened for the `csv` module (UTF-8); every failure to read it inside the block
    (encoding, CSV syntax, I/O) is a one-line `RgbtadError` naming the file."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            yield handle
    except UnicodeDecodeError:
        raise RgbtadError(f"{path}: not a UTF-8 text file") from None
    except csv.Error as err:
        raise RgbtadError(f"{path}: malformed CSV ({err})") from None
    except OSError as err:
        raise RgbtadError(f"{path}: cannot read ({err.strerror or err})") from None
