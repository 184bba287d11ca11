"""ONNX export of a detector: features -> raw predictions, for ONNX Runtime.

**Detector graph** (``OUT.onnx``). Inputs ``feats`` (float32 ``1 x C x L``) and ``masks``
(bool ``1 x L``, True = real snippet), where the time axis ``L`` is dynamic: any length that
`rgbtad.data.batching.pad_batch` produces at inference works, i.e. ``max_seq_len`` or, for
longer videos, the next multiple of the detector's ``max_div_factor`` (both are in the
metadata). Outputs: the per-level fields of the detector's output type that its family's
post-processing reads, named ``<field>_<l>`` per pyramid level ``l`` (finest first), as
`LAYOUTS` lists them:

* `rgbtad.detection.protocol.DetectorOutput` (ActionFormer): ``cls_logits_l`` (``1 x T_l x
  K``), ``offsets_l`` (``1 x T_l x 2``) and ``masks_l`` (bool ``1 x T_l``);
* `rgbtad.detection.trident.TriDetOutput` (TriDet): those, plus the Trident head's raw
  branches ``center_offsets_l``, ``start_logits_l`` and ``end_logits_l`` (none of the last
  two without the Trident head, where ``center_offsets_l`` are the two offsets), and
  ``num_bins`` in the metadata: TriDet decodes every candidate from its own class's offsets.

A distillation student exports as the detector its eval forward runs. Decoding and soft-NMS
stay outside the graph: `rgbtad.export.runtime.OrtDetector` rebuilds the output type from
the output names (the pyramid points from the per-level stride and regression range stored
in the metadata) and the run's own ``model.postprocess`` makes the detections, so PyTorch
and ONNX Runtime share every line of post-processing.

Local (windowed) attention is computed in the PyTorch model with strided views
(``unfold`` / ``as_strided``) that the ONNX exporter cannot express for a dynamic length.
During export every `ConvAttention` runs in its ``"shifted"`` mode instead
(`rgbtad.detection.attention.local_attention_mode`): ``2w + 1`` shifted slices, the same
scores, masks and softmax, summed in another order (differences of a few 1e-6). Nothing else
changes: the model's eval-mode ``forward(feats, masks)`` is traced.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from rgbtad.core.errors import RgbtadError
from rgbtad.detection.attention import local_attention_mode
from rgbtad.detection.protocol import DetectorOutput
from rgbtad.detection.trident import TriDetOutput
from rgbtad.export.graph_file import FORMAT, OPSET, check_tolerance, max_abs_diff, open_session, write_metadata

EXPORT_ATTENTION = "shifted"  # the ConvAttention mode the exporter can express (module doc)


@dataclass(frozen=True)
class GraphLayout:
    """How one output type travels through a detector graph: its per-level tensor `fields`
    are the graph's outputs (in this order; a field left empty has none), its plain
    `scalars` are metadata entries."""

    output: type[DetectorOutput]
    fields: tuple[str, ...]
    scalars: tuple[str, ...] = ()

    def output_names(self, out: DetectorOutput) -> list[str]:
        return [f"{name}_{level}" for name in self.fields for level in range(len(getattr(out, name)))]


_PLAIN_FIELDS = ("cls_logits", "offsets", "masks")
#: every output type a detector graph carries: what its family's post-processing reads
LAYOUTS = (GraphLayout(DetectorOutput, _PLAIN_FIELDS),
           GraphLayout(TriDetOutput, _PLAIN_FIELDS + ("center_offsets", "start_logits", "end_logits"),
                       ("num_bins",)))


def layout_of(out: DetectorOutput) -> GraphLayout:
    """The layout of the output type of `out` (exactly that type: a subclass may add fields
    its post-processing reads)."""
    for layout in LAYOUTS:
        if type(out) is layout.output:
            return layout
    raise RgbtadError(f"no ONNX graph layout for detector outputs of type {type(out).__name__} "
                      f"(known: {', '.join(layout.output.__name__ for layout in LAYOUTS)})")


def layout_for_fields(fields: set[str]) -> GraphLayout:
    """The layout of a graph whose outputs carry `fields`: the first that has them all."""
    for layout in LAYOUTS:
        if fields <= set(layout.fields):
            return layout
    raise RgbtadError(f"graph outputs {sorted(fields)} fit no detector output type")


class _DetectorGraph(nn.Module):
    def __init__(self, model: nn.Module, fields: tuple[str, ...]):
        super().__init__()
        self.model = model
        self.fields = fields

    def forward(self, feats: torch.Tensor, masks: torch.Tensor):
        out = self.model(feats, masks)
        return tuple(x for name in self.fields for x in getattr(out, name))


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
    layout = layout_of(reference)
    levels = [[float(p[0, 3]) if len(p) else 0.0, float(p[0, 1]) if len(p) else 0.0,
               float(p[0, 2]) if len(p) else 0.0] for p in reference.points]
    names = layout.output_names(reference)
    axes = {"feats": {2: "length"}, "masks": {1: "length"}}
    axes.update({name: {1: f"length_{name.rsplit('_', 1)[1]}"} for name in names})
    graph = _DetectorGraph(model, layout.fields).eval()  # the exporter restores the wrapper's mode afterwards
    with atomic_path(out_path, suffix=".tmp.onnx") as tmp, local_attention_mode(model, EXPORT_ATTENTION), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.no_grad():
            torch.onnx.export(graph, (feats, masks), str(tmp), dynamo=False, input_names=["feats", "masks"],
                              output_names=names, dynamic_axes=axes, opset_version=OPSET)
        meta = {"input_dim": int(input_dim), "num_classes": int(num_classes), "levels": levels,
                "max_div_factor": step, **{name: getattr(reference, name) for name in layout.scalars},
                **(extra_meta or {})}
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
