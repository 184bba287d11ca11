"""Pieces shared by the batch commands over videos (`rgbtad extract`, `rgbtad motion`):
the report of a batch, sharding, and per-video failure capture."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from rgbtad.core.errors import RgbtadError

log = logging.getLogger(__name__)


@dataclass
class BatchReport:
    """Outcome of a batch over videos: finished now, skipped (already done), failed."""

    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        lines = [f"{len(self.done)} done, {len(self.skipped)} skipped (already done), {len(self.failed)} failed"]
        lines += [f"  FAILED {message}" for _, message in self.failed]
        return "\n".join(lines)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'K/N' (1-based K) -> (K, N); None -> None."""
    if text is None:
        return None
    try:
        k_text, n_text = str(text).split("/")
        k, n = int(k_text), int(n_text)
    except ValueError:
        raise RgbtadError(f"invalid shard {text!r}: expected K/N, e.g. 1/4") from None
    return check_shard((k, n))


def check_shard(shard: tuple[int, int]) -> tuple[int, int]:
    k, n = int(shard[0]), int(shard[1])
    if n < 1 or not 1 <= k <= n:
        raise RgbtadError(f"invalid shard {k}/{n}: need 1 <= K <= N")
    return k, n


def resolve_shard(shard: tuple[int, int] | str | None) -> tuple[int, int] | None:
    """The explicit shard, else the torchrun rank (RANK / WORLD_SIZE > 1), else None."""
    if isinstance(shard, str):
        return parse_shard(shard)
    if shard is not None:
        return check_shard(shard)
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world > 1:
        rank = int(os.environ.get("RANK", "0") or 0)
        return check_shard((rank + 1, world))
    return None


def select_shard(videos: list[Path], shard: tuple[int, int] | None) -> list[Path]:
    """Videos of shard K/N: the list sorted by file name, then every N-th from the K-th."""
    ordered = sorted(videos, key=lambda p: (Path(p).name, str(p)))
    if shard is None:
        return ordered
    k, n = shard
    return ordered[k - 1::n]


def failure_message(path: Path, err: BaseException) -> str:
    """One line naming the file: RgbtadError messages already do; others get the path."""
    if isinstance(err, RgbtadError):
        text = str(err)
        return text if str(path) in text else f"{path}: {text}"
    log.debug("failure on %s", path, exc_info=err)
    return f"{path}: {type(err).__name__}: {err}"
