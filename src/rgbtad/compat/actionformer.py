"""Import of official ActionFormer release checkpoints and configs.

``import_actionformer(config_path, checkpoint_path, out_dir)`` turns a release YAML config
(happyharrycn/actionformer_release, ``configs/*.yaml``) and one of its checkpoints
(``epoch_XXX.pth.tar``) into an rgbtad run directory that ``rgbtad infer`` can use: the
config through `rgbtad.compat.actionformer_config`, the weights through
`rgbtad.compat.actionformer_weights`, the class names through
`rgbtad.compat.actionformer_classes`.
"""

from __future__ import annotations

import logging
from pathlib import Path

from rgbtad.compat.actionformer_classes import annotation_path, class_names
from rgbtad.compat.actionformer_config import config_from_release, read_release_config
from rgbtad.compat.actionformer_weights import convert_state_dict, load_release_checkpoint

log = logging.getLogger(__name__)

__all__ = ["import_actionformer"]


def import_actionformer(config_path: str | Path, checkpoint_path: str | Path, out_dir: str | Path,
                        annotations: str | Path | None = None, *, overwrite: bool = False) -> None:
    """Write an rgbtad run directory from a release config + checkpoint. A folder that
    already holds a run is refused unless `overwrite`, which replaces that run's files
    once the import has succeeded."""
    from rgbtad.detection import build_detector
    from rgbtad.runs.run_dir import check_no_run, clear_run, save_run

    if not overwrite:
        check_no_run(out_dir)
    config_path = Path(config_path)
    release = read_release_config(config_path)
    cfg, notes = config_from_release(release, str(config_path))
    for note in notes:
        log.warning("%s: %s", config_path, note)

    ann_path = annotation_path(release, config_path, annotations)
    cfg.data.annotations = str(ann_path)
    names = class_names(ann_path, cfg.model.num_classes)

    model = build_detector(cfg, num_classes=cfg.model.num_classes)
    state = convert_state_dict(load_release_checkpoint(checkpoint_path), model, str(checkpoint_path))
    model.load_state_dict(state, strict=True)
    clear_run(out_dir)
    save_run(out_dir, cfg, names, state)
