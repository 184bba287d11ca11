"""Static int8 quantization of an exported backbone graph (ONNX Runtime), its calibration
batches, and the relative feature error it is judged by."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np

from rgbtad.core.errors import RgbtadError
from rgbtad.export.graph_file import BACKBONE_FORMAT, open_session, read_metadata, write_metadata


def quantize_backbone(fp32_path: str | Path, out_path: str | Path, calibration: list[np.ndarray]) -> float:
    """Static int8 quantization of the backbone graph `fp32_path` into `out_path` (ONNX
    Runtime, QDQ format: int8 weights per output channel, uint8 activations whose ranges are
    the min/max over the `calibration` input batches, the backbone's inputs as extraction
    feeds them). Returns the relative error of the int8 features on those batches,
    ``||int8 - fp32|| / ||fp32||``, also recorded in the graph's metadata."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    from rgbtad.core.atomic import atomic_path

    fp32_path, out_path = Path(fp32_path), Path(out_path)
    if not calibration:
        raise RgbtadError(f"{out_path}: no calibration snippets for int8 quantization")

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calibration)

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"snippets": batch}

    fp32 = open_session(fp32_path)
    meta = read_metadata(fp32, fp32_path, BACKBONE_FORMAT)
    with atomic_path(out_path, suffix=".tmp.onnx") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = tmp.with_name(tmp.name + ".pre.onnx")
        logging.disable(logging.INFO)  # the quantizer logs every tensor it touches (root logger, INFO)
        try:
            quant_pre_process(str(fp32_path), str(prepared))  # shape inference, constant folding
            # (min/max calibration keeps only per-tensor minima and maxima of each batch)
            quantize_static(str(prepared), str(tmp), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        finally:
            logging.disable(logging.NOTSET)
            prepared.unlink(missing_ok=True)
        int8 = open_session(tmp)
        error = relative_error((int8.run(None, {"snippets": batch})[0], fp32.run(None, {"snippets": batch})[0])
                               for batch in calibration)
        meta["quantization"] = {"format": "int8 static (QDQ, per-channel weights, min/max activations)",
                                "calibration_snippets": int(sum(len(b) for b in calibration)),
                                "feature_relative_error": error}
        write_metadata(tmp, BACKBONE_FORMAT, meta)
    return error


def relative_error(pairs) -> float:
    """``||got - want|| / ||want||`` (L2, float64) over all the (got, want) array pairs."""
    num = den = 0.0
    for got, want in pairs:
        want = np.asarray(want, dtype=np.float64)
        num += float(np.square(np.asarray(got, dtype=np.float64) - want).sum())
        den += float(np.square(want).sum())
    return (num / den) ** 0.5 if den > 0 else 0.0


def calibration_batches(batches, limit: int) -> list[np.ndarray]:
    """At most about `limit` snippets' worth of `batches` (an iterator of input batches), spread
    evenly over the stream without knowing its length: keep every `step`-th batch, doubling
    `step` (and thinning what was kept) whenever too many are held."""
    kept: list[tuple[int, np.ndarray]] = []
    step = 1
    for index, batch in enumerate(batches):
        if index % step:
            continue
        kept.append((index, batch))
        while sum(len(b) for _, b in kept) > max(1, int(limit)) and len(kept) > 1:
            step *= 2
            kept = [(i, b) for i, b in kept if i % step == 0]
    return [b for _, b in kept]
