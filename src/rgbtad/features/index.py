"""The feature index of an extraction folder: which videos are done, with which settings.

An index file is ``{"format", "settings", "videos": {stem: entry}}`` (`rgbtad.features.extract`
lists the keys). Every process writes only its own index file, so concurrent shards never
overwrite each other's entries: an unsharded run writes ``features.json``, shard K of N
(``--shard K/N`` or torchrun rank) writes ``features.shard-K-of-N.json``. Readers
(`load_features_index`, and the skip check of every run) merge all of them; an unsharded run
also copies every entry it finds into ``features.json``, so rerunning without ``--shard`` after
a sharded extraction consolidates the index. All index files of a folder must agree on the
settings; a run with other settings fails at once, naming the file (use another folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rgbtad.core.atomic import write_json
from rgbtad.core.errors import RgbtadError
from rgbtad.core.jsonio import read_json_file

FORMAT = "rgbtad-features-1"
INDEX_FILE = "features.json"


def index_file_name(shard: tuple[int, int] | None) -> str:
    return INDEX_FILE if shard is None else f"features.shard-{shard[0]}-of-{shard[1]}.json"


def _index_files(out_dir: Path) -> list[Path]:
    files = [out_dir / INDEX_FILE] if (out_dir / INDEX_FILE).is_file() else []
    files += sorted(out_dir.glob("features.shard-*-of-*.json"))
    return files


def _read_index(path: Path) -> dict:
    data = read_json_file(path, "feature index")
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("videos"), dict):
        raise RgbtadError(f"{path}: not a feature index written by rgbtad extract")
    return data


def load_features_index(out_dir: str | Path) -> dict:
    """Merged index of a feature folder: ``{"format", "settings", "videos"}`` (module doc).

    Raises `RgbtadError` when there is no index or when index files disagree on settings.
    """
    out_dir = Path(out_dir)
    files = _index_files(out_dir)
    if not files:
        raise RgbtadError(f"{out_dir}: no feature index ({INDEX_FILE} or features.shard-K-of-N.json)")
    merged: dict[str, Any] = {"format": FORMAT, "settings": None, "videos": {}}
    for path in files:
        data = _read_index(path)
        if merged["settings"] is None:
            merged["settings"] = data.get("settings")
        elif data.get("settings") != merged["settings"]:
            raise RgbtadError(f"{path}: extracted with other settings than {files[0].name}")
        merged["videos"].update(data["videos"])
    return merged


def _describe_difference(old: dict, new: dict) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k} {old.get(k)!r} (now {new.get(k)!r})" for k in keys[:4])


def _stored_videos(path: Path) -> dict | None:
    """The entries of the index file `path`; None when it is missing or unreadable."""
    try:
        return _read_index(path)["videos"] if path.is_file() else None
    except RgbtadError:
        return None


class ExtractionIndex:
    """The index as one extraction run sees it: `listed`, the entries of every index file of
    the folder (which must have been written with `settings`), and the run's own index file,
    which `add` rewrites after each video."""

    def __init__(self, out_dir: Path, settings: dict, shard: tuple[int, int] | None):
        self.settings = settings
        self.listed: dict[str, dict] = {}
        for path in _index_files(out_dir):
            data = _read_index(path)
            if data.get("settings") != settings:
                raise RgbtadError(f"{path}: features in this folder were extracted with other settings: "
                                  f"{_describe_difference(data.get('settings') or {}, settings)}; "
                                  "use another --out")
            self.listed.update(data["videos"])
        self.path = out_dir / index_file_name(shard)
        self.own: dict[str, dict] = dict(self.listed) if shard is None else (
            dict(_read_index(self.path)["videos"]) if self.path.is_file() else {})
        self.consolidates = shard is None

    def consolidate(self) -> None:
        """Unsharded: copy every entry found into features.json (when it differs)."""
        if self.consolidates and self.own != _stored_videos(self.path):
            self._save()

    def add(self, stem: str, entry: dict) -> None:
        self.own[stem] = entry
        self._save()

    def _save(self) -> None:
        write_json(self.path, {"format": FORMAT, "settings": self.settings, "videos": dict(sorted(self.own.items()))})
