"""Import of official TriDet release checkpoints and configs.

``import_tridet(config_path, checkpoint_path, out_dir)`` turns a release YAML config
(dingfengshi/TriDet, ``configs/*.yaml``) and a checkpoint its ``train.py`` saved
(``epoch_XXX.pth.tar``: the EMA weights ``state_dict_ema`` with ``module.`` prefixes, as
ActionFormer's) into an rgbtad run directory (``model.name: tridet``) that ``rgbtad infer``
can use: the config through `rgbtad.compat.tridet_config`, the weights through
`rgbtad.compat.tridet`, the rest as for ActionFormer (`rgbtad.compat.actionformer.import_release`).
"""

from __future__ import annotations

from pathlib import Path

from rgbtad.compat.actionformer import import_release
from rgbtad.compat.tridet import convert_tridet_state_dict
from rgbtad.compat.tridet_config import read_tridet_config, tridet_config_from_release

__all__ = ["import_tridet"]


def import_tridet(config_path: str | Path, checkpoint_path: str | Path, out_dir: str | Path,
                  annotations: str | Path | None = None, *, overwrite: bool = False) -> None:
    """Write an rgbtad run directory from a TriDet release config + checkpoint (see
    `rgbtad.compat.actionformer.import_release`)."""
    import_release(config_path, checkpoint_path, out_dir, annotations, overwrite, read_config=read_tridet_config,
                   to_config=tridet_config_from_release, convert=convert_tridet_state_dict)
