"""Video-level class scores ("external classification scores"): the files that turn a
class-agnostic detector's detections into class-aware ones (`rgbtad.detection.score_fusion`).

`load_video_scores` reads four layouts, told apart by the file's suffix and keys:

* rgbtad's own, JSON: ``{"classes": [name, ...], "scores": {video_id: [score, ...]}}``, one
  score per class, in the order of ``classes``;
* ActionFormer's ActivityNet file (``cuhk_val_simp_share.json``), JSON:
  ``{"results": {video_id: [200 scores]}, "class": [200 names], ...}``; other keys
  (``version``, ``external_data``) are ignored. Without ``"class"`` the columns are label ids
  of the dataset's classes (the release uses them so);
* ActionFormer's pickle variant (``.pkl`` / ``.pickle``): ``{video_id: scores}`` (lists or
  NumPy arrays), columns as label ids. Only plain containers and NumPy arrays are unpickled,
  so a pickle cannot run code;
* G-TAD's UntrimmedNet file (``uNet_test.npy``, ``.npy``): a float array of THUMOS'14 test
  videos x the 101 UCF101 classes. Row ``i`` is video ``video_test_{i+1:07d}``, column
  ``j`` is UCF101 class ``j + 1`` (THUMOS's ``type_idx``); as G-TAD does, only the 20 THUMOS
  action columns are kept (`THUMOS14_UCF101_INDEX`), named after the THUMOS classes.

Every problem (unreadable or unknown layout, repeated or empty class names, a video with the
wrong number of scores, a non-finite score, a missing video) is an `RgbtadError` naming the
file and what is wrong. A video id is found as given or, failing that, with ActivityNet's
``v_`` file prefix added or removed.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rgbtad.core.errors import RgbtadError
from rgbtad.core.jsonio import read_json_file

__all__ = ["THUMOS14_UCF101_INDEX", "VideoScores", "load_video_scores"]

#: THUMOS'14's 20 action classes and their UCF101 class index (1-based: THUMOS's type_idx,
#: the column + 1 of UntrimmedNet's 101-class scores)
THUMOS14_UCF101_INDEX = {
    "BaseballPitch": 7, "BasketballDunk": 9, "Billiards": 12, "CleanAndJerk": 21, "CliffDiving": 22,
    "CricketBowling": 23, "CricketShot": 24, "Diving": 26, "FrisbeeCatch": 31, "GolfSwing": 33,
    "HammerThrow": 36, "HighJump": 40, "JavelinThrow": 45, "LongJump": 51, "PoleVault": 68,
    "Shotput": 79, "SoccerPenalty": 85, "TennisSwing": 92, "ThrowDiscus": 93, "VolleyballSpiking": 97,
}
_UCF101_CLASSES = 101


@dataclass(frozen=True, eq=False)
class VideoScores:
    """One score per class for each video: ``scores[video_id]`` is a float64 array over the
    columns, named by ``classes`` (None: the columns are label ids of the dataset's classes)."""

    source: str
    classes: tuple[str, ...] | None
    scores: dict[str, np.ndarray]

    @property
    def num_classes(self) -> int:
        return len(next(iter(self.scores.values())))

    def for_video(self, video_id: str) -> np.ndarray:
        """The scores of `video_id` (also found under its ``v_``-prefixed or unprefixed id)."""
        alias = video_id[2:] if video_id.startswith("v_") else f"v_{video_id}"
        found = self.scores.get(video_id, self.scores.get(alias))
        if found is None:
            raise RgbtadError(f"{self.source}: no class scores for video '{video_id}'")
        return found

    def aligned(self, class_names: list[str] | None) -> "VideoScores":
        """These scores with their columns in the order of `class_names` (the dataset's
        classes; None: keep the file's named columns). A named file must name exactly the
        dataset's classes; an unnamed one must have one column per dataset class."""
        if class_names is None:
            if self.classes is None:
                raise RgbtadError(f"{self.source}: the file does not name its classes and there is no "
                                  "class list to read its columns as label ids")
            return self
        if self.classes is None:
            if len(class_names) != self.num_classes:
                raise RgbtadError(f"{self.source}: {self.num_classes} scores per video, the dataset has "
                                  f"{len(class_names)} classes")
            return VideoScores(self.source, tuple(class_names), self.scores)
        unknown = [name for name in self.classes if name not in class_names]
        if unknown:
            raise RgbtadError(f"{self.source}: class '{unknown[0]}' is not a class of the dataset "
                              f"({len(unknown)} unknown in all)")
        absent = [name for name in class_names if name not in self.classes]
        if absent:
            raise RgbtadError(f"{self.source}: no scores for the dataset's class '{absent[0]}' "
                              f"({len(absent)} missing in all)")
        order = np.array([self.classes.index(name) for name in class_names])
        return VideoScores(self.source, tuple(class_names), {vid: s[order] for vid, s in self.scores.items()})


def load_video_scores(path: str | Path) -> VideoScores:
    """The video-level class scores of `path`, in one of the layouts of the module doc."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _from_json(path, read_json_file(path, "class score"))
    if suffix in (".pkl", ".pickle"):
        return _checked(path, None, _read_pickle(path))
    if suffix == ".npy":
        return _from_untrimmednet(path)
    raise RgbtadError(f"{path}: unknown class score format '{suffix}' (expected .json, .pkl or .npy)")


def _from_json(path: Path, data) -> VideoScores:
    if isinstance(data, dict) and "classes" in data and "scores" in data:
        return _checked(path, _names(path, data["classes"], "classes"), data["scores"])
    if isinstance(data, dict) and "results" in data:
        names = _names(path, data["class"], "class") if "class" in data else None
        return _checked(path, names, data["results"])
    raise RgbtadError(f"{path}: unknown class score layout: expected {{\"classes\": [...], \"scores\": "
                      "{video: [...]}} or ActionFormer's {\"results\": {video: [...]}, \"class\": [...]}")


def _names(path: Path, names, key: str) -> tuple[str, ...]:
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise RgbtadError(f"{path}: '{key}' must be a non-empty list of class names")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise RgbtadError(f"{path}: class '{repeated[0]}' is named more than once in '{key}'")
    return tuple(names)


def _checked(path: Path, names: tuple[str, ...] | None, table) -> VideoScores:
    """The table ``{video_id: scores}`` as float64 arrays, every row checked."""
    if not isinstance(table, dict) or not table:
        raise RgbtadError(f"{path}: expected a non-empty mapping of video ids to class scores")
    scores: dict[str, np.ndarray] = {}
    width = len(names) if names is not None else None
    for video_id, row in table.items():
        try:
            values = np.asarray(row, dtype=np.float64)
        except (TypeError, ValueError):
            raise RgbtadError(f"{path}: video '{video_id}': scores are not a list of numbers") from None
        if values.ndim != 1:
            raise RgbtadError(f"{path}: video '{video_id}': expected one list of scores, got shape "
                              f"{values.shape}")
        if not len(values):
            raise RgbtadError(f"{path}: video '{video_id}' has no scores")
        width = len(values) if width is None else width
        if len(values) != width:
            what = f"the file names {len(names)} classes" if names is not None else f"others have {width}"
            raise RgbtadError(f"{path}: video '{video_id}' has {len(values)} scores, {what}")
        if not np.isfinite(values).all():
            raise RgbtadError(f"{path}: video '{video_id}': non-finite class score")
        scores[str(video_id)] = values
    return VideoScores(str(path), names, scores)


class _ArraysOnly(pickle.Unpickler):
    """Unpickles containers and NumPy arrays; anything else could run code, so it is refused."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _read_pickle(path: Path):
    try:
        with open(path, "rb") as handle:
            return _ArraysOnly(handle).load()
    except FileNotFoundError:
        raise RgbtadError(f"{path}: class score file not found") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as err:
        raise RgbtadError(f"{path}: not a pickle of class scores ({err})") from None
    except OSError as err:
        raise RgbtadError(f"{path}: cannot read ({err.strerror or err})") from None


def _from_untrimmednet(path: Path) -> VideoScores:
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise RgbtadError(f"{path}: class score file not found") from None
    except (ValueError, OSError) as err:
        raise RgbtadError(f"{path}: not a NumPy array file ({err})") from None
    if array.ndim != 2 or array.shape[1] != _UCF101_CLASSES or not np.issubdtype(array.dtype, np.number):
        raise RgbtadError(f"{path}: unknown class score layout: a .npy file must be UntrimmedNet's "
                          f"videos x {_UCF101_CLASSES} UCF101 class scores, got {array.dtype} {array.shape}")
    columns = [index - 1 for index in THUMOS14_UCF101_INDEX.values()]
    table = {f"video_test_{row + 1:07d}": array[row, columns] for row in range(len(array))}
    return _checked(path, tuple(THUMOS14_UCF101_INDEX), table)
