"""rgbtad's ONNX files: their format tags and metadata entries, opening them with ONNX
Runtime, and the check every exported graph passes against PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from rgbtad.core.errors import RgbtadError

FORMAT = "rgbtad-onnx-detector-1"
BACKBONE_FORMAT = "rgbtad-onnx-backbone-1"
OPSET = 17
TOLERANCE = 1e-4


def open_session(path: Path, device: torch.device | str | None = None):
    try:
        import onnxruntime as ort
    except ImportError:  # pragma: no cover - a pinned dependency
        raise RgbtadError("onnxruntime is not installed (pip install onnxruntime)") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, torch.get_num_threads())
    options.log_severity_level = 3
    providers = ["CPUExecutionProvider"]
    if device is not None and torch.device(device).type == "cuda" \
            and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    if not path.is_file():
        raise RgbtadError(f"{path}: ONNX file not found")
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RgbtadError(f"{path}: not a loadable ONNX model ({first})") from None


def read_metadata(session, path: Path, fmt: str) -> dict:
    meta = session.get_modelmeta().custom_metadata_map
    if meta.get("rgbtad_format") != fmt:
        raise RgbtadError(f"{path}: not an ONNX file written by `rgbtad export` ({fmt})")
    try:
        return json.loads(meta["rgbtad"])
    except (KeyError, json.JSONDecodeError):
        raise RgbtadError(f"{path}: rgbtad metadata missing or malformed") from None


def write_metadata(path: Path, fmt: str, meta: dict) -> None:
    """Write rgbtad's two metadata entries into the ONNX file `path`, replacing old ones."""
    import onnx

    proto = onnx.load(str(path))
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key not in ("rgbtad_format", "rgbtad")]
    del proto.metadata_props[:]
    for key, value in (*kept, ("rgbtad_format", fmt), ("rgbtad", json.dumps(meta))):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def max_abs_diff(onnx_outputs, torch_outputs) -> float:
    """The largest |onnxruntime - PyTorch| over the outputs (inf when a shape differs)."""
    worst = 0.0
    for a, b in zip(onnx_outputs, torch_outputs):
        a = np.asarray(a, dtype=np.float64)
        b = b.detach().cpu().double().numpy()
        if a.shape != b.shape:
            return float("inf")
        if a.size:
            worst = max(worst, float(np.abs(a - b).max()))
    return worst


def check_tolerance(worst: float, out_path: Path) -> None:
    if not worst <= TOLERANCE:
        raise RgbtadError(f"{out_path}: ONNX Runtime differs from PyTorch by {worst:.3g} "
                          f"(> {TOLERANCE:g}); not written")
