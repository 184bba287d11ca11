"""The run directory: everything needed to use a trained detector.

Layout::

    RUN_DIR/config.yaml        resolved config (every default written out)
    RUN_DIR/classes.json       class names, index = label id
    RUN_DIR/model.pt           {"model": EMA state dict, "raw_model": raw state dict or None}
    RUN_DIR/checkpoints/       resumable training checkpoints (trainer only)
    RUN_DIR/logs/              metrics.csv and TensorBoard events (trainer only)

`rgbtad train`, `rgbtad import-actionformer` and (later) `rgbtad demo` all write this layout
through `save_run`, and `rgbtad infer` reads it through `load_run`.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from rgbtad.config import Config, load_config, save_config
from rgbtad.errors import RgbtadError
from rgbtad.utils.atomic import atomic_path, write_json

CONFIG_FILE = "config.yaml"
CLASSES_FILE = "classes.json"
MODEL_FILE = "model.pt"


def save_run(run_dir: str | Path, cfg: Config, class_names: list[str], model_state: dict,
             raw_state: dict | None = None) -> None:
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / CONFIG_FILE)
    write_json(run_dir / CLASSES_FILE, list(class_names))
    with atomic_path(run_dir / MODEL_FILE) as tmp:
        torch.save({"model": model_state, "raw_model": raw_state}, tmp)


def load_run(run_dir: str | Path, device: str | torch.device = "cpu"):
    """Return (config, class_names, detector in eval mode on `device`)."""
    from rgbtad.detection import build_detector

    run_dir = Path(run_dir)
    for name in (CONFIG_FILE, CLASSES_FILE, MODEL_FILE):
        if not (run_dir / name).is_file():
            raise RgbtadError(f"{run_dir}: not a run directory (missing {name})")
    cfg = load_config(run_dir / CONFIG_FILE)
    try:
        class_names = json.loads((run_dir / CLASSES_FILE).read_text())
    except json.JSONDecodeError as err:
        raise RgbtadError(f"{run_dir / CLASSES_FILE}: not valid JSON ({err})") from None
    model = build_detector(cfg, num_classes=len(class_names))
    state = torch.load(run_dir / MODEL_FILE, map_location="cpu", weights_only=True)
    missing, unexpected = model.load_state_dict(state["model"], strict=False)
    if missing or unexpected:
        raise RgbtadError(
            f"{run_dir / MODEL_FILE}: weights do not fit the configured detector "
            f"(missing keys: {missing[:5]}, unexpected keys: {unexpected[:5]})"
        )
    return cfg, class_names, model.to(device).eval()
