"""`rgbtad export`: a run as ONNX files for ONNX Runtime, the detector (features -> raw
predictions, `rgbtad.export.detector`) and optionally its RGB backbone (snippets -> features,
`rgbtad.export.backbone`; int8 with `rgbtad.export.quantize`), each checked against PyTorch.
`rgbtad.export.runtime` runs them. ActionFormer and TriDet runs export, distilled students
over them too (as the detector their eval forward runs); G-TAD and TadTR do not
(`NOT_EXPORTED`).

The exporter is PyTorch's TorchScript-based one (``dynamo=False``), which needs only the
``onnx`` package; ``onnxruntime`` runs the graphs.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from rgbtad.core.errors import RgbtadError
from rgbtad.export.backbone import export_backbone
from rgbtad.export.detector import export_detector
from rgbtad.export.quantize import calibration_batches, quantize_backbone

#: detector families without a detector graph, and why (every other family and its students export)
NOT_EXPORTED = {
    family: "its evaluation cuts each video into windows in Python (as many as the video's length needs) and "
            "merges the windows' predictions there, which one graph of per-level predictions cannot hold"
    for family in ("gtad", "tadtr")
}


@dataclass
class ExportResult:
    detector: Path
    backbone: Path | None
    max_abs_diff: float  # largest |onnxruntime - PyTorch| over the checked outputs
    backbone_max_abs_diff: float | None  # of the float32 backbone graph
    backbone_int8_error: float | None = None  # relative feature error of the int8 graph, if quantized


def backbone_path_for(out_path: str | Path) -> Path:
    """Where the backbone graph of detector graph `out_path` goes: ``<stem>.backbone.onnx``."""
    out_path = Path(out_path)
    return out_path.with_name(f"{out_path.stem}.backbone.onnx")


def export_run(run_dir: str | Path, out_path: str | Path, *, with_backbone: bool = False,
               int8_calibration: list[str | Path] | None = None, calibration_snippets: int = 128,
               check: bool = True) -> ExportResult:
    """`rgbtad export`: the run's detector (and, with `with_backbone`, its RGB backbone from
    backbone.json) as ONNX files checked against PyTorch (module doc). `int8_calibration`:
    videos whose snippets (about `calibration_snippets`, spread over them) calibrate an int8
    backbone graph (`quantize_backbone`) written instead of the float32 one."""
    import itertools
    import tempfile

    from rgbtad.features.extract import load_backbone, snippet_encoder
    from rgbtad.runs.run_dir import load_backbone_spec, load_run

    out_path = Path(out_path)
    if out_path.suffix.lower() != ".onnx":
        raise RgbtadError(f"{out_path}: the output file name must end in .onnx")
    if out_path.is_dir():
        raise RgbtadError(f"{out_path}: is a folder, expected an .onnx file name")
    if int8_calibration and not with_backbone:
        raise RgbtadError("--int8-calibration quantizes the backbone graph: add --with-backbone")
    for video in int8_calibration or ():
        if not Path(video).is_file():
            raise RgbtadError(f"{video}: calibration video not found")
    if importlib.util.find_spec("onnx") is None:  # pragma: no cover - a pinned dependency
        raise RgbtadError("the onnx package is not installed (pip install onnx)")
    cfg, class_names, model = load_run(run_dir, "cpu")
    if cfg.model.name in NOT_EXPORTED:
        raise RgbtadError(f"{run_dir}: model.name {cfg.model.name!r} does not export to ONNX: "
                          f"{NOT_EXPORTED[cfg.model.name]}")
    backbone_out = None
    backbone_diff = None
    int8_error = None
    if with_backbone:
        spec = load_backbone_spec(run_dir)
        net, _ = load_backbone(spec["backbone"], "rgb", spec["weights"])
        width, height = _example_size(spec["size"])
        backbone_out = backbone_path_for(out_path)
        settings = {"snippet_frames": spec["snippet_frames"], "height": height, "width": width, "check": check}
        if not int8_calibration:
            backbone_diff = export_backbone(net, backbone_out, **settings)
        else:
            encoder = snippet_encoder(net, spec["snippets"], device="cpu", precision="fp32")
            inputs = itertools.chain.from_iterable(encoder.backbone_inputs(Path(v)) for v in int8_calibration)
            with tempfile.TemporaryDirectory() as tmp:
                fp32_path = Path(tmp) / "backbone.onnx"
                backbone_diff = export_backbone(net, fp32_path, **settings)
                int8_error = quantize_backbone(fp32_path, backbone_out,
                                               calibration_batches(inputs, calibration_snippets))
    extra = {"classes": list(class_names), "max_seq_len": int(cfg.data.max_seq_len),
             "backbone_file": backbone_out.name if backbone_out is not None else None}
    diff = export_detector(model, out_path, input_dim=int(cfg.data.input_dim), num_classes=len(class_names),
                           length=int(cfg.data.max_seq_len), extra_meta=extra, check=check)
    return ExportResult(detector=out_path, backbone=backbone_out, max_abs_diff=diff,
                        backbone_max_abs_diff=backbone_diff, backbone_int8_error=int8_error)


def _example_size(size) -> tuple[int, int]:
    """An example frame size for tracing the backbone (height and width stay dynamic)."""
    if isinstance(size, (tuple, list)):
        return int(size[0]), int(size[1])
    if isinstance(size, int):
        return size, size
    return 224, 224
