"""The run directory: everything needed to use a trained detector.

Layout::

    RUN_DIR/config.yaml        resolved config (every default written out)
    RUN_DIR/classes.json       class names, index = label id
    RUN_DIR/model.pt           {"model": EMA state dict, "raw_model": raw state dict or None}
    RUN_DIR/backbone.json      RGB backbone settings for `rgbtad detect` (`attach_backbone`)
    RUN_DIR/backbone.pt        its weights (absent for a randomly initialised backbone)
    RUN_DIR/checkpoints/       resumable training checkpoints (trainer only)
    RUN_DIR/logs/              train.csv, val.csv and TensorBoard events (trainer only)
    RUN_DIR/summary.json       final metrics (trainer only)

`rgbtad train`, `rgbtad import-actionformer` and (later) `rgbtad demo` all write this layout
through `save_run`, and `rgbtad infer` reads it through `load_run`. A folder holding any of
these entries holds a run: writing a new run there is refused unless the caller replaces
it (`check_no_run`, `clear_run`), so two runs never mix in one folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from rgbtad.config import Config, load_config, save_config
from rgbtad.core.atomic import atomic_path, write_json
from rgbtad.core.errors import RgbtadError
from rgbtad.core.jsonio import read_json_file
from rgbtad.core.torchio import load_torch_file
from rgbtad.distill import build_model  # the registry's, with the students registered
from rgbtad.video.snippets import SnippetSpec

CONFIG_FILE = "config.yaml"
CLASSES_FILE = "classes.json"
MODEL_FILE = "model.pt"
BACKBONE_FILE = "backbone.json"
BACKBONE_WEIGHTS = "backbone.pt"
BACKBONE_FORMAT = "rgbtad-backbone-1"
SUMMARY_FILE = "summary.json"
CHECKPOINTS_DIR = "checkpoints"
LOGS_DIR = "logs"
TRAIN_LOG = f"{LOGS_DIR}/train.csv"  # the per-iteration losses `rgbtad.training.logs` writes
RUN_ENTRIES = (CONFIG_FILE, CLASSES_FILE, MODEL_FILE, BACKBONE_FILE, BACKBONE_WEIGHTS, SUMMARY_FILE,
               CHECKPOINTS_DIR, LOGS_DIR)


def run_entries(run_dir: str | Path, entries: tuple[str, ...] = RUN_ENTRIES) -> list[str]:
    """The entries of the run layout (`entries`: another layout's, e.g. a backbone run's) that
    `run_dir` holds (an empty sub-folder holds nothing)."""
    run_dir = Path(run_dir)
    return [name for name in entries if (run_dir / name).is_file()
            or ((run_dir / name).is_dir() and any((run_dir / name).iterdir()))]


def check_no_run(run_dir: str | Path, hint: str = "use --overwrite to replace it, or another --out",
                 entries: tuple[str, ...] = RUN_ENTRIES) -> None:
    """Refuse to write a new run into a folder that holds another one (changing nothing)."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RgbtadError(f"{run_dir}: exists and is not a folder")
    found = run_entries(run_dir, entries)
    if found:
        raise RgbtadError(f"{run_dir}: already holds a run ({', '.join(found)}); {hint}")


def clear_run(run_dir: str | Path, entries: tuple[str, ...] = RUN_ENTRIES) -> None:
    """Remove the run layout's entries from `run_dir` (what --overwrite replaces); other
    files in the folder are not the run's and stay."""
    for name in entries:
        path = Path(run_dir) / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def save_run(run_dir: str | Path, cfg: Config, class_names: list[str], model_state: dict,
             raw_state: dict | None = None) -> None:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / CONFIG_FILE)
    write_json(run_dir / CLASSES_FILE, list(class_names))
    with atomic_path(run_dir / MODEL_FILE) as tmp:
        torch.save({"model": model_state, "raw_model": raw_state}, tmp)


def load_run(run_dir: str | Path, device: str | torch.device = "cpu"):
    """Return (config, class_names, detector in eval mode on `device`). A distilled
    student is built without its teacher: it predicts from the student's features alone."""
    run_dir = Path(run_dir)
    for name in (CONFIG_FILE, CLASSES_FILE, MODEL_FILE):
        if not (run_dir / name).is_file():
            raise RgbtadError(f"{run_dir}: not a run directory (missing {name})")
    cfg = load_config(run_dir / CONFIG_FILE)
    class_names = read_json_file(run_dir / CLASSES_FILE, "class list")
    if (not isinstance(class_names, list) or not class_names
            or not all(isinstance(name, str) and name for name in class_names)):
        raise RgbtadError(f"{run_dir / CLASSES_FILE}: expected a JSON list of class names")
    try:
        model = build_model(cfg, num_classes=len(class_names))
    except RgbtadError as err:
        raise RgbtadError(f"{run_dir / CONFIG_FILE}: {err}") from None
    state = load_torch_file(run_dir / MODEL_FILE, "run weights")
    weights = state.get("model") if isinstance(state, dict) else None
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise RgbtadError(f"{run_dir / MODEL_FILE}: not an rgbtad model file (no 'model' state dict)")
    _check_fit(model.state_dict(), weights, run_dir)
    model.load_state_dict(weights)
    return cfg, class_names, model.to(device).eval()


def _check_fit(expected: dict, weights: dict, run_dir: Path) -> None:
    """One line naming the files when model.pt was not written for this config.yaml and
    classes.json (load_state_dict would raise a long RuntimeError)."""
    problems = []
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    mismatched = [f"{k} {list(weights[k].shape)} vs {list(v.shape)}" for k, v in expected.items()
                  if k in weights and weights[k].shape != v.shape]
    for what, keys in (("missing", missing), ("unexpected", unexpected), ("shape file vs config", mismatched)):
        if keys:
            problems.append(f"{what}: {', '.join(keys[:3])}" + (f" and {len(keys) - 3} more" if len(keys) > 3 else ""))
    if problems:
        raise RgbtadError(f"{run_dir / MODEL_FILE}: weights do not fit the detector of {CONFIG_FILE} and "
                          f"{CLASSES_FILE} ({'; '.join(problems)})")


# --------------------------------------------------------------------------- backbone settings
#
# backbone.json (format "rgbtad-backbone-1") tells `rgbtad detect` how to turn a video into
# the features the detector was trained on. Keys: "backbone" (registry name, required),
# "snippet_frames" and "stride" (required), "modality" ("rgb"), "weights" (file name relative
# to the run directory, an absolute path, or null for the seeded random initialisation of
# `rgbtad extract`), "fps" (null: native rate), "size" (short side P, [W, H], or null: native),
# "input_mean" / "input_std" (per channel, for pixels in [0, 1]; default: the backbone's),
# "feature_dim" (checked when given), "precision" ("fp32" or "bf16").

_SPEC_KEYS = ("backbone", "modality", "snippet_frames", "stride", "fps", "size", "precision",
              "feature_dim", "input_mean", "input_std")


def attach_backbone(run_dir: str | Path, features_dir: str | Path | None) -> bool:
    """Record the RGB backbone that made `features_dir` in `run_dir` (backbone.json, plus the
    weights copied to backbone.pt). Returns False, changing nothing, when the folder has no
    `rgbtad extract` index or holds features of another modality."""
    import logging

    from rgbtad.features.index import INDEX_FILE, load_features_index

    log = logging.getLogger(__name__)
    if not features_dir or not (Path(features_dir) / INDEX_FILE).is_file():
        return False
    try:
        settings = load_features_index(features_dir).get("settings") or {}
    except RgbtadError as err:
        log.warning("%s; the run gets no backbone settings", err)
        return False
    if settings.get("modality") != "rgb" or not settings.get("backbone"):
        return False
    run_dir = Path(run_dir)
    spec = {"format": BACKBONE_FORMAT, **{key: settings.get(key) for key in _SPEC_KEYS},
            "weights": None, "source": str(Path(features_dir) / INDEX_FILE)}
    weights = settings.get("weights")
    if weights:
        if not Path(weights).is_file():
            log.warning("%s: backbone weights %s not found; the run gets no backbone settings",
                        Path(features_dir) / INDEX_FILE, weights)
            return False
        with atomic_path(run_dir / BACKBONE_WEIGHTS) as tmp:
            shutil.copyfile(weights, tmp)
        spec["weights"] = BACKBONE_WEIGHTS
    write_json(run_dir / BACKBONE_FILE, spec)
    return True


def load_backbone_spec(run_dir: str | Path) -> dict:
    """backbone.json of `run_dir`, checked and completed: every key of the format, with
    "weights" resolved to a path (or None), and "snippets" the `SnippetSpec` it describes."""
    run_dir = Path(run_dir)
    path = run_dir / BACKBONE_FILE
    if not path.is_file():
        raise RgbtadError(f"{run_dir}: no backbone settings (train on features made by `rgbtad extract`, "
                          f"or add {BACKBONE_FILE})")
    data = read_json_file(path, "backbone settings")
    if not isinstance(data, dict):
        raise RgbtadError(f"{path}: expected a JSON object")
    spec = {key: data.get(key) for key in _SPEC_KEYS}
    spec["modality"] = spec["modality"] or "rgb"
    spec["precision"] = spec["precision"] or "fp32"
    if not isinstance(spec["backbone"], str) or not spec["backbone"]:
        raise RgbtadError(f"{path}: 'backbone' must name a backbone, e.g. \"tsm_r18\"")
    if spec["modality"] != "rgb":
        raise RgbtadError(f"{path}: modality is {spec['modality']!r}; detection runs on RGB only")
    for key in ("snippet_frames", "stride"):
        value = spec[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise RgbtadError(f"{path}: '{key}' must be a positive integer, got {value!r}")
    if spec["fps"] is not None and (isinstance(spec["fps"], bool) or not isinstance(spec["fps"], (int, float))
                                    or not spec["fps"] > 0):
        raise RgbtadError(f"{path}: 'fps' must be a positive number or null, got {spec['fps']!r}")
    size = spec["size"]
    if isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size):
        spec["size"] = (int(size[0]), int(size[1]))
    elif size is not None and not (isinstance(size, int) and not isinstance(size, bool) and size > 0):
        raise RgbtadError(f"{path}: 'size' must be a short side P, [W, H] or null, got {size!r}")
    for key in ("input_mean", "input_std"):
        value = spec[key]
        if value is not None and (not isinstance(value, list) or not value
                                  or not all(isinstance(v, (int, float)) for v in value)):
            raise RgbtadError(f"{path}: '{key}' must be a list of numbers or absent, got {value!r}")
    if spec["precision"] not in ("fp32", "bf16"):
        raise RgbtadError(f"{path}: 'precision' must be \"fp32\" or \"bf16\", got {spec['precision']!r}")
    weights = data.get("weights")
    if weights is not None:
        if not isinstance(weights, str) or not weights:
            raise RgbtadError(f"{path}: 'weights' must be a file name or null, got {weights!r}")
        resolved = Path(weights) if Path(weights).is_absolute() else run_dir / weights
        if not resolved.is_file():
            raise RgbtadError(f"{path}: backbone weights {resolved} not found")
        weights = resolved
    spec["weights"] = weights
    spec["snippets"] = SnippetSpec.from_record(spec, str(path))
    return spec
