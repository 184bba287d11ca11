"""Import of official ActionFormer release checkpoints and configs.

``import_actionformer(config_path, checkpoint_path, out_dir)`` turns a release YAML config
(happyharrycn/actionformer_release, ``configs/*.yaml``) and one of its checkpoints
(``epoch_XXX.pth.tar``) into an rgbtad run directory that ``rgbtad infer`` can use: the
config through `rgbtad.compat.actionformer_config`, the weights through
`rgbtad.compat.actionformer_weights`, the class names through
`rgbtad.compat.actionformer_classes`. `import_release` does the same for the release's forks
(TriDet: `rgbtad.compat.tridet_import`), given their config reader and weight mapping.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from rgbtad.compat.actionformer_classes import annotation_path, class_names
from rgbtad.compat.actionformer_config import config_from_release, read_release_config
from rgbtad.compat.actionformer_weights import convert_state_dict, load_release_checkpoint

log = logging.getLogger(__name__)

__all__ = ["import_actionformer", "import_release"]


def import_release(config_path: str | Path, checkpoint_path: str | Path, out_dir: str | Path,
                   annotations: str | Path | None, overwrite: bool, *, read_config: Callable,
                   to_config: Callable, convert: Callable) -> None:
    """Write an rgbtad run directory from a release config + checkpoint: the config read by
    `read_config(path)` and mapped by `to_config(release, source)`, the checkpoint's weights
    by `convert(state, model, source)`. A folder that already holds a run is refused unless
    `overwrite`, which replaces that run's files once the import has succeeded."""
    from rgbtad.detection import build_detector
    from rgbtad.runs.run_dir import check_no_run, clear_run, save_run

    if not overwrite:
        check_no_run(out_dir)
    config_path = Path(config_path)
    release = read_config(config_path)
    cfg, notes = to_config(release, str(config_path))
    for note in notes:
        log.warning("%s: %s", config_path, note)

    ann_path = annotation_path(release, config_path, annotations)
    cfg.data.annotations = str(ann_path)
    names = class_names(ann_path, cfg.model.num_classes)

    model = build_detector(cfg, num_classes=cfg.model.num_classes)
    state = convert(load_release_checkpoint(checkpoint_path), model, str(checkpoint_path))
    model.load_state_dict(state, strict=True)
    clear_run(out_dir)
    save_run(out_dir, cfg, names, state)


def import_actionformer(config_path: str | Path, checkpoint_path: str | Path, out_dir: str | Path,
                        annotations: str | Path | None = None, *, overwrite: bool = False) -> None:
    """Write an rgbtad run directory from an ActionFormer release config + checkpoint (see
    `import_release`)."""
    import_release(config_path, checkpoint_path, out_dir, annotations, overwrite, read_config=read_release_config,
                   to_config=config_from_release, convert=convert_state_dict)
