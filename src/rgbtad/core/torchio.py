"""The one reader of user-supplied PyTorch files (checkpoints, run weights, backbone weights).

A ``.pt`` / ``.pth`` file is a pickle, and a plain ``torch.load(weights_only=False)`` runs
whatever code the pickle names. `load_torch_file` never does: it builds tensors, plain
containers (dict, list, tuple, OrderedDict, Counter, ...), numbers, strings and numpy
arrays and scalars of plain numeric dtypes (training checkpoints hold numpy's RNG state,
release metadata holds numpy scalars), and nothing else.

Two modes:

- default (our own files: ``model.pt``, ``checkpoints/last.pt``, clip-training weights):
  anything else in the file refuses it, with an `RgbtadError` naming the file and the
  object it would have needed.
- ``foreign_metadata=True`` (third-party releases: ActionFormer checkpoints, backbone
  weights from mmaction2, pytorch-i3d, pytorchvideo, ...): their metadata may pickle
  objects of other libraries (mmengine log buffers, an argparse Namespace, scheduler
  state). Those become inert stand-ins (`_Opaque`): their classes and functions are never
  imported or called, so the tensors come through and the metadata is simply not read.
"""

from __future__ import annotations

import collections
import pickle
import re
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rgbtad.core.errors import RgbtadError

__all__ = ["load_torch_file"]

# numpy arrays and scalars of these dtypes are rebuilt from their raw bytes (no object
# dtype: its items would be arbitrary pickles)
_NUMPY_DTYPES = np.typecodes["AllFloat"] + np.typecodes["AllInteger"] + "?"
_NUMPY_GLOBALS = [np._core.multiarray._reconstruct, np._core.multiarray.scalar, np.ndarray, np.dtype,
                  *{type(np.dtype(code)) for code in _NUMPY_DTYPES}]


def load_torch_file(path: str | Path, what: str = "checkpoint", *, foreign_metadata: bool = False) -> Any:
    """The object pickled in `path`, on the CPU, built from safe types only (module doc).

    `what` names the file in error messages ("training checkpoint", "run weights", ...).
    Every failure is a one-line `RgbtadError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise RgbtadError(f"{path}: {what} file not found")
    try:
        try:
            with torch.serialization.safe_globals(_NUMPY_GLOBALS):
                return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            needed = _unsafe_global(err)
            if needed is None:  # not a pickle at all
                raise
            if not foreign_metadata:
                raise RgbtadError(f"{path}: refused: loading this {what} would need {needed}; only tensors, "
                                  "numbers and plain containers are read (no code in a file is run)") from None
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_tolerant_pickle)
    except RgbtadError:
        raise
    except Exception as err:  # any other failure means an unreadable file
        raise RgbtadError(f"{path}: cannot read {what} ({type(err).__name__}: {_reason(err)})") from None


def _unsafe_global(err: pickle.UnpicklingError) -> str | None:
    """The class or function the weights-only unpickler refused, from its long message."""
    found = re.search(r"GLOBAL (\S+)|but got <class '([^']+)'>", str(err))
    return (found.group(1) or found.group(2)) if found else None


def _reason(err: Exception) -> str:
    """The informative line of an error (torch's weights-only errors start with advice)."""
    text = str(err)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


class _Opaque:
    """Stand-in for an object of a class we will not import (e.g. mmengine's log buffers)."""

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __setstate__(self, state) -> None:
        pass


_TORCH_GLOBALS = {
    ("torch", "Tensor"), ("torch", "Size"), ("torch.nn.parameter", "Parameter"),
    ("torch._tensor", "_rebuild_from_type_v2"), ("collections", "OrderedDict"),
    ("torch.storage", "UntypedStorage"), ("torch.storage", "TypedStorage"),
}


class _TolerantUnpickler(pickle.Unpickler):
    """Rebuilds tensors and plain containers; every other class or function becomes an inert
    `_Opaque` subclass. Nothing outside the allow-list is imported or run."""

    def find_class(self, module: str, name: str):
        if (module, name) in _TORCH_GLOBALS or (module == "torch._utils" and name.startswith("_rebuild_")):
            return super().find_class(module, name)
        if module == "torch" and (name.endswith("Storage") or isinstance(
                getattr(torch, name, None), (torch.dtype, torch.layout, torch.memory_format))):
            return getattr(torch, name)
        if module == "collections" and name in ("defaultdict", "deque", "Counter"):
            return getattr(collections, name)
        if module == "_codecs" and name == "encode":
            return super().find_class(module, name)
        return type(f"{module}.{name}", (_Opaque,), {"__module__": "opaque"})


# torch.load takes a pickle *module*; this one unpickles with `_TolerantUnpickler` only
_tolerant_pickle = types.ModuleType("rgbtad_tolerant_pickle")
_tolerant_pickle.Unpickler = _TolerantUnpickler
_tolerant_pickle.load = lambda f, **kw: _TolerantUnpickler(f, **kw).load()
