"""ONNX export of a run: the detector (features -> raw predictions) and optionally its RGB
backbone (snippets -> features), for ONNX Runtime.

**Detector graph** (``OUT.onnx``). Inputs ``feats`` (float32 ``1 x C x L``) and ``masks``
(bool ``1 x L``, True = real snippet), where the time axis ``L`` is dynamic: any length that
`rgbtad.data.batching.pad_batch` produces at inference works, i.e. ``max_seq_len`` or, for
longer videos, the next multiple of the detector's ``max_div_factor`` (both are in the
metadata). Outputs, per pyramid level ``l`` (finest first): ``cls_logits_l`` (``1 x T_l x
K``), ``offsets_l`` (``1 x T_l x 2``) and ``masks_l`` (bool ``1 x T_l``): the fields of
`rgbtad.detection.protocol.DetectorOutput`. Decoding and soft-NMS stay outside the graph:
`OrtDetector` turns the outputs back into a ``DetectorOutput`` (the pyramid points are
rebuilt from the per-level stride and regression range stored in the metadata) and the
run's own ``model.postprocess`` makes the detections, so PyTorch and ONNX Runtime share every
line of post-processing.

Local (windowed) attention is computed in the PyTorch model with strided views
(``unfold`` / ``as_strided``) that the ONNX exporter cannot express for a dynamic length.
During export every `ConvAttention` runs in its ``"shifted"`` mode instead
(`rgbtad.detection.attention.local_attention_mode`): ``2w + 1`` shifted slices, the same
scores, masks and softmax, summed in another order (differences of a few 1e-6). Nothing else
changes, so any `rgbtad.detection.protocol.Detector` exports (plain ActionFormer runs and
distilled students alike): its eval-mode ``forward(feats, masks)``.

**Backbone graph** (``OUT.backbone.onnx``, with ``with_backbone``). Input ``snippets``
(float32 ``B x 3 x N x H x W``, normalized with the backbone's mean and std), output
``features`` (``B x D``); batch, height and width are dynamic, ``N`` (frames per snippet)
is fixed. The detector graph's metadata names this file, and `rgbtad detect --onnx` then
runs both graphs; decoding, resizing and snippet sampling are the same code as `rgbtad
extract`.

The exporter is PyTorch's TorchScript-based one (``dynamo=False``), which needs only the
``onnx`` package; ``onnxruntime`` runs the graphs.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from rgbtad.core.errors import RgbtadError
from rgbtad.detection.attention import local_attention_mode
from rgbtad.detection.protocol import DetectorOutput

log = logging.getLogger(__name__)

FORMAT = "rgbtad-onnx-detector-1"
BACKBONE_FORMAT = "rgbtad-onnx-backbone-1"
OPSET = 17
TOLERANCE = 1e-4
EXPORT_ATTENTION = "shifted"  # the ConvAttention mode the exporter can express (module doc)


class _DetectorGraph(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, feats: torch.Tensor, masks: torch.Tensor):
        out = self.model(feats, masks)
        return tuple(out.cls_logits) + tuple(out.offsets) + tuple(out.masks)


# --------------------------------------------------------------------------- ONNX Runtime


def _session(path: Path, device: torch.device | str | None = None):
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


def _metadata(session, path: Path, fmt: str) -> dict:
    meta = session.get_modelmeta().custom_metadata_map
    if meta.get("rgbtad_format") != fmt:
        raise RgbtadError(f"{path}: not an ONNX file written by `rgbtad export` ({fmt})")
    try:
        return json.loads(meta["rgbtad"])
    except (KeyError, json.JSONDecodeError):
        raise RgbtadError(f"{path}: rgbtad metadata missing or malformed") from None


class OrtDetector:
    """The detector graph as a drop-in for the model's forward:
    ``OrtDetector(path)(feats, masks) -> DetectorOutput`` (torch tensors on the input's device)."""

    def __init__(self, path: str | Path, device: torch.device | str | None = None):
        self.path = Path(path)
        self.session = _session(self.path, device)
        self.meta = _metadata(self.session, self.path, FORMAT)
        self.levels = [tuple(level) for level in self.meta["levels"]]  # (stride, lo, hi)
        self.backbone_path = (self.path.parent / self.meta["backbone_file"]) if self.meta.get("backbone_file") else None

    def check_model(self, model: nn.Module, input_dim: int, num_classes: int) -> None:
        """Raise unless the graph was exported from a detector of this shape."""
        if self.meta["input_dim"] != input_dim or self.meta["num_classes"] != num_classes:
            raise RgbtadError(
                f"{self.path}: exported for {self.meta['input_dim']}-d features and "
                f"{self.meta['num_classes']} classes, the run has {input_dim} and {num_classes}")
        if self.meta["max_div_factor"] != int(model.max_div_factor):
            raise RgbtadError(f"{self.path}: exported from another detector architecture than the run's")

    def __call__(self, feats: torch.Tensor, masks: torch.Tensor):
        outputs = self.session.run(None, {"feats": feats.detach().float().cpu().numpy(),
                                          "masks": masks.detach().bool().cpu().numpy()})
        n = len(self.levels)
        device = feats.device
        cls_logits = [torch.from_numpy(x).to(device) for x in outputs[:n]]
        offsets = [torch.from_numpy(x).to(device) for x in outputs[n:2 * n]]
        level_masks = [torch.from_numpy(x).bool().to(device) for x in outputs[2 * n:3 * n]]
        points = []
        for logits, (stride, low, high) in zip(cls_logits, self.levels):
            length = logits.shape[1]
            rows = torch.empty(length, 4, dtype=torch.float32, device=device)
            rows[:, 0] = torch.arange(length, dtype=torch.float32, device=device) * stride
            rows[:, 1], rows[:, 2], rows[:, 3] = float(low), float(high), float(stride)
            points.append(rows)
        return DetectorOutput(cls_logits=cls_logits, offsets=offsets, masks=level_masks, points=points)


class OrtBackbone(nn.Module):
    """The backbone graph behind the backbone contract (`rgbtad.backbones.base`), so that
    feature extraction runs it like any backbone module."""

    def __init__(self, path: str | Path, device: torch.device | str | None = None):
        super().__init__()
        self.path = Path(path)
        self.session = _session(self.path, device)
        meta = _metadata(self.session, self.path, BACKBONE_FORMAT)
        self.name = meta["backbone"]
        self.modality = meta["modality"]
        self.feature_dim = int(meta["feature_dim"])
        self.input_mean = tuple(meta["input_mean"])
        self.input_std = tuple(meta["input_std"])
        self.snippet_frames = int(meta["snippet_frames"])
        self.min_frames = self.snippet_frames

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        if clips.dim() != 5 or clips.shape[2] != self.snippet_frames:
            raise RgbtadError(f"{self.path}: expects B x C x {self.snippet_frames} x H x W snippets, "
                              f"got {tuple(clips.shape)}")
        (features,) = self.session.run(None, {"snippets": clips.detach().float().cpu().numpy()})
        return torch.from_numpy(features).to(clips.device)


# --------------------------------------------------------------------------- export


@dataclass
class ExportResult:
    detector: Path
    backbone: Path | None
    max_abs_diff: float  # largest |onnxruntime - PyTorch| over the checked outputs
    backbone_max_abs_diff: float | None  # of the float32 backbone graph
    backbone_int8_error: float | None = None  # relative feature error of the int8 graph, if quantized


def _set_metadata(path: Path, fmt: str, meta: dict) -> None:
    """Write rgbtad's two metadata entries into the ONNX file `path`, replacing old ones."""
    import onnx

    proto = onnx.load(str(path))
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key not in ("rgbtad_format", "rgbtad")]
    del proto.metadata_props[:]
    for key, value in (*kept, ("rgbtad_format", fmt), ("rgbtad", json.dumps(meta))):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))


def _max_diff(onnx_outputs, torch_outputs) -> float:
    worst = 0.0
    for a, b in zip(onnx_outputs, torch_outputs):
        a = np.asarray(a, dtype=np.float64)
        b = b.detach().cpu().double().numpy()
        if a.shape != b.shape:
            return float("inf")
        if a.size:
            worst = max(worst, float(np.abs(a - b).max()))
    return worst


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
        _set_metadata(tmp, FORMAT, meta)
        worst = 0.0
        if check:
            session = _session(tmp)
            # the traced length and a longer one (the time axis must really be dynamic)
            for trial, size in enumerate((length, length + step)):
                f, m = _example(model, input_dim, size, max(1, size - step - 3), trial + 1)
                with torch.no_grad():
                    expected = graph(f, m)
                got = session.run(None, {"feats": f.numpy(), "masks": m.numpy()})
                worst = max(worst, _max_diff(got, expected))
            if not worst <= TOLERANCE:
                raise RgbtadError(f"{out_path}: ONNX Runtime differs from PyTorch by {worst:.3g} "
                                  f"(> {TOLERANCE:g}); not written")
    return worst


def export_backbone(net: nn.Module, out_path: str | Path, *, snippet_frames: int, height: int, width: int,
                    extra_meta: dict | None = None, check: bool = True) -> float:
    """Write the backbone graph (snippets -> features) to `out_path`; return the largest
    difference to PyTorch on an example batch (0.0 without `check`)."""
    from rgbtad.core.atomic import atomic_path

    out_path = Path(out_path)
    net = net.eval().cpu()
    channels = len(tuple(net.input_mean))
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(2, channels, int(snippet_frames), int(height), int(width), generator=generator)
    axes = {"snippets": {0: "batch", 3: "height", 4: "width"}, "features": {0: "batch"}}
    with atomic_path(out_path, suffix=".tmp.onnx") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.no_grad():
            torch.onnx.export(net, (example,), str(tmp), dynamo=False, input_names=["snippets"],
                              output_names=["features"], dynamic_axes=axes, opset_version=OPSET)
        meta = {"backbone": getattr(net, "name", type(net).__name__), "modality": getattr(net, "modality", "rgb"),
                "feature_dim": int(net.feature_dim), "input_mean": [float(v) for v in net.input_mean],
                "input_std": [float(v) for v in net.input_std], "snippet_frames": int(snippet_frames),
                **(extra_meta or {})}
        _set_metadata(tmp, BACKBONE_FORMAT, meta)
        worst = 0.0
        if check:
            session = _session(tmp)
            batch = torch.randn(3, channels, int(snippet_frames), int(height), int(width), generator=generator)
            with torch.no_grad():
                expected = net(batch)
            (got,) = session.run(None, {"snippets": batch.numpy()})
            worst = _max_diff([got], [expected])
            if not worst <= TOLERANCE:
                raise RgbtadError(f"{out_path}: ONNX Runtime differs from PyTorch by {worst:.3g} "
                                  f"(> {TOLERANCE:g}); not written")
    return worst


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

    fp32 = _session(fp32_path)
    meta = _metadata(fp32, fp32_path, BACKBONE_FORMAT)
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
        int8 = _session(tmp)
        error = relative_error((int8.run(None, {"snippets": batch})[0], fp32.run(None, {"snippets": batch})[0])
                               for batch in calibration)
        meta["quantization"] = {"format": "int8 static (QDQ, per-channel weights, min/max activations)",
                                "calibration_snippets": int(sum(len(b) for b in calibration)),
                                "feature_relative_error": error}
        _set_metadata(tmp, BACKBONE_FORMAT, meta)
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
