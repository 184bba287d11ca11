"""ONNX export of a detector: features -> raw predictions, for ONNX Runtime.

**Detector graph** (``OUT.onnx``). Inputs ``feats`` (float32 ``1 x C x L``) and ``masks``
(bool ``1 x L``, True = real snippet), where the time axis ``L`` is dynamic: any length that
`rgbtad.data.batching.pad_batch` produces at inference works, i.e. ``max_seq_len`` or, for
longer videos, the next multiple of the detector's ``max_div_factor`` (both are in the
metadata). Outputs, per pyramid level ``l`` (finest first): ``cls_logits_l`` (``1 x T_l x
K``), ``offsets_l`` (``1 x T_l x 2``) and ``masks_l`` (bool ``1 x T_l``): the fields of
`rgbtad.detection.protocol.DetectorOutput`. Decoding and soft-NMS stay outside the graph:
`rgbtad.export.runtime.OrtDetector` turns the outputs back into a ``DetectorOutput`` (the
pyramid points are rebuilt from the per-level stride and regression range stored in the
metadata) and the run's own ``model.postprocess`` makes the detections, so PyTorch and ONNX
Runtime share every line of post-processing.

Local (windowed) attention is computed in the PyTorch model with strided views
(``unfold`` / ``as_strided``) that the ONNX exporter cannot express for a dynamic length.
During export every `ConvAttention` runs in its ``"shifted"`` mode instead
(`rgbtad.detection.attention.local_attention_mode`): ``2w + 1`` shifted slices, the same
scores, masks and softmax, summed in another order (differences of a few 1e-6). Nothing else
changes, so any `rgbtad.detection.protocol.Detector` exports (plain ActionFormer runs and
distilled students alike): its eval-mode ``forward(feats, masks)``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from rgbtad.detection.attention import local_attention_mode
from rgbtad.export.graph_file import FORMAT, OPSET, check_tolerance, max_abs_diff, open_session, write_metadata

EXPORT_ATTENTION = "shifted"  # the ConvAttention mode the exporter can express (module doc)


class _DetectorGraph(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, feats: torch.Tensor, masks: torch.Tensor):
        out = self.model(feats, masks)
        return tuple(out.cls_logits) + tuple(out.offsets) + tuple(out.masks)


def _example(model: nn.Module, input_dim: int, length: int, valid: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    feats = torch.randn(1, input_dim, length, generator=generator)
    masks = torch.arange(length)[None, :] < valid
    return feats * masks[:, None, :].float(), masks


def export_detector(model: nn.Module, out_path: str | Path, *, input_dim: int, num_classes: int,
                    length: int, extra_meta: dict | None = None, check: bool = True) -> float:
    """Write the detector graph of `model` (eval mode, CPU) to `out_path`; return the largest
    difference to PyTorch on two example inputs (0.0 without `check`)."""
    from rgbtad.core.atomic import atomic_path

    out_path = Path(out_path)
    model = model.eval().cpu()
    step = int(model.max_div_factor)
    length = max(step, -(-int(length) // step) * step)
    feats, masks = _example(model, input_dim, length, max(1, length - step // 2 - 1), 0)
    with torch.no_grad():
        reference = model(feats, masks)
    levels = [[float(p[0, 3]) if len(p) else 0.0, float(p[0, 1]) if len(p) else 0.0,
               float(p[0, 2]) if len(p) else 0.0] for p in reference.points]
    names = ([f"cls_logits_{i}" for i in range(len(levels))] + [f"offsets_{i}" for i in range(len(levels))]
             + [f"masks_{i}" for i in range(len(levels))])
    axes = {"feats": {2: "length"}, "masks": {1: "length"}}
    axes.update({name: {1: f"length_{name.rsplit('_', 1)[1]}"} for name in names})
    graph = _DetectorGraph(model).eval()  # the exporter restores the wrapper's mode afterwards
    with atomic_path(out_path, suffix=".tmp.onnx") as tmp, local_attention_mode(model, EXPORT_ATTENTION), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.no_grad():
            torch.onnx.export(graph, (feats, masks), str(tmp), dynamo=False, input_names=["feats", "masks"],
                              output_names=names, dynamic_axes=axes, opset_version=OPSET)
        meta = {"input_dim": int(input_dim), "num_classes": int(num_classes), "levels": levels,
                "max_div_factor": step, **(extra_meta or {})}
        write_metadata(tmp, FORMAT, meta)
        worst = 0.0
        if check:
            session = open_session(tmp)
            # the traced length and a longer one (the time axis must really be dynamic)
            for trial, size in enumerate((length, length + step)):
                f, m = _example(model, input_dim, size, max(1, size - step - 3), trial + 1)
                with torch.no_grad():
                    expected = graph(f, m)
                got = session.run(None, {"feats": f.numpy(), "masks": m.numpy()})
                worst = max(worst, max_abs_diff(got, expected))
            check_tolerance(worst, out_path)
    return worst
