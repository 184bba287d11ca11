"""The exported graphs run by ONNX Runtime, as drop-ins for the PyTorch modules: the
detector graph (`OrtDetector`, see `rgbtad.export.detector`) behind the detector's forward
and the backbone graph (`OrtBackbone`, see `rgbtad.export.backbone`) behind the backbone
contract."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from rgbtad.core.errors import RgbtadError
from rgbtad.detection.protocol import DetectorOutput
from rgbtad.export.detector import layout_for_fields
from rgbtad.export.graph_file import BACKBONE_FORMAT, FORMAT, open_session, read_metadata


class OrtDetector:
    """The detector graph as a drop-in for the model's forward:
    ``OrtDetector(path)(feats, masks) -> DetectorOutput`` (torch tensors on the input's device),
    of the output type whose fields the graph's outputs carry (a `TriDetOutput` for TriDet)."""

    def __init__(self, path: str | Path, device: torch.device | str | None = None):
        self.path = Path(path)
        self.session = open_session(self.path, device)
        self.meta = read_metadata(self.session, self.path, FORMAT)
        self.levels = [tuple(level) for level in self.meta["levels"]]  # (stride, lo, hi)
        # outputs "<field>_<level>" in the graph's order (`rgbtad.export.detector`)
        self.outputs = [output.name.rsplit("_", 1) for output in self.session.get_outputs()]
        self.layout = layout_for_fields({field for field, _ in self.outputs})
        missing = [name for name in self.layout.scalars if name not in self.meta]
        if missing:
            raise RgbtadError(f"{self.path}: rgbtad metadata lacks {', '.join(missing)}")
        self.backbone_path = (self.path.parent / self.meta["backbone_file"]) if self.meta.get("backbone_file") else None

    def check_model(self, model: nn.Module, input_dim: int, num_classes: int) -> None:
        """Raise unless the graph was exported from a detector of this shape."""
        if self.meta["input_dim"] != input_dim or self.meta["num_classes"] != num_classes:
            raise RgbtadError(
                f"{self.path}: exported for {self.meta['input_dim']}-d features and "
                f"{self.meta['num_classes']} classes, the run has {input_dim} and {num_classes}")
        if self.meta["max_div_factor"] != int(model.max_div_factor):
            raise RgbtadError(f"{self.path}: exported from another detector architecture than the run's")
        # the run's post-processing decodes the output type (and bins) the graph rebuilds
        device = next(model.parameters()).device
        length = 2 * int(model.max_div_factor)  # a top level of one step does not normalise
        with torch.no_grad():
            probe = model(torch.zeros(1, input_dim, length, device=device),
                          torch.ones(1, length, dtype=torch.bool, device=device))
        graph = {name: self.meta[name] for name in self.layout.scalars}
        run = {name: getattr(probe, name, None) for name in graph}
        if type(probe) is not self.layout.output or run != graph:
            raise RgbtadError(f"{self.path}: holds {_kind(self.layout.output, graph)} outputs, the run's detector "
                              f"gives {_kind(type(probe), run)} outputs")

    def __call__(self, feats: torch.Tensor, masks: torch.Tensor) -> DetectorOutput:
        outputs = self.session.run(None, {"feats": feats.detach().float().cpu().numpy(),
                                          "masks": masks.detach().bool().cpu().numpy()})
        device = feats.device
        fields: dict[str, list[torch.Tensor]] = {name: [] for name in self.layout.fields}
        for (field, _), value in zip(self.outputs, outputs):
            fields[field].append(torch.from_numpy(value).to(device))
        fields["masks"] = [m.bool() for m in fields["masks"]]
        points = []
        for logits, (stride, low, high) in zip(fields["cls_logits"], self.levels):
            length = logits.shape[1]
            rows = torch.empty(length, 4, dtype=torch.float32, device=device)
            rows[:, 0] = torch.arange(length, dtype=torch.float32, device=device) * stride
            rows[:, 1], rows[:, 2], rows[:, 3] = float(low), float(high), float(stride)
            points.append(rows)
        scalars = {name: self.meta[name] for name in self.layout.scalars}
        return self.layout.output(**fields, points=points, **scalars)


def _kind(output_type: type, scalars: dict) -> str:
    return output_type.__name__ + "".join(f" ({name} {value})" for name, value in scalars.items())


class OrtBackbone(nn.Module):
    """The backbone graph behind the backbone contract (`rgbtad.backbones.base`), so that
    feature extraction runs it like any backbone module."""

    def __init__(self, path: str | Path, device: torch.device | str | None = None):
        super().__init__()
        self.path = Path(path)
        self.session = open_session(self.path, device)
        meta = read_metadata(self.session, self.path, BACKBONE_FORMAT)
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
