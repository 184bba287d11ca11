"""The TadTR detector (Liu et al., "End-to-end Temporal Action Detection with Transformer",
TIP 2022): a deformable transformer over fixed windows of snippets, learned action queries
with iterative segment refinement, an actionness branch, set prediction by Hungarian
matching, no anchors and no NMS inside a window.

Release counterpart: ``TadTR`` / ``build`` (``models/tadtr.py`` of xlliu7/TadTR, commit
983ae14), with its parts in `rgbtad.detection.tadtr_attention` (deformable attention,
position encoding), `rgbtad.detection.tadtr_transformer`, `rgbtad.detection.tadtr_roi`
(actionness), `rgbtad.detection.tadtr_matcher`, `rgbtad.detection.tadtr_loss` and
`rgbtad.detection.tadtr_postprocess` (windows, top-k, fusion). The forward::

    x = GroupNorm(Conv1d(x))                 # input_proj: input_dim -> hidden_dim (32 groups)
    memory = encoder(x + sine positions)     # enc_layers deformable self-attention layers
    per decoder layer l: class_embed[l](h_l) (logits), the refined segment (centre, width)
    actionness = MLP(RoIAlign(memory, last-layer segments widened 1.5x))

Windows. The release trains and tests on THUMOS14 in windows of ``slice_len`` (128) snippets;
here the window is ``data.max_seq_len``: a training forward takes the trainer's crops (each
one window, ``B x C x max_seq_len``); an eval forward takes whole videos of any length, cuts
each into the release's test windows (``tadtr.test_overlap``) and runs them as one batch;
`postprocess` merges their detections as the release does (`fuse_windows`). The release's
THUMOS windows are zero-padded to ``slice_len`` and unmasked (its batches are all full, so its
mask is empty): with ``tadtr.mask_padding`` False (the default) padding is seen the same way
and coordinates are fractions of the window; True uses the release model's masked path
(masked values and positions, valid ratios, coordinates as fractions of the valid part).

Coordinates: rgbtad's snippet grid (`rgbtad.core.timebase.SnippetGrid`) replaces the
release's ``index / feature_fps`` seconds; window-relative (centre, width) are the same
fractions either way. Detections are clipped to the video (segments left empty dropped).

`TadTROutput` is not a `DetectorOutput` (no per-level dense predictions); it keeps, per
decoder layer, the class logits, segments and query features for query-level distillation.
`loss_normalizer` is the number of ground-truth segments of the last batch (the release's
divisor; no EMA). `param_groups`: weight decay on every parameter (the release's AdamW
groups), the ``reference_points`` / ``sampling_offsets`` projections at
``lr_linear_proj_mult`` x ``train.learning_rate``. Registered as ``"tadtr"``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from rgbtad.core.errors import RgbtadError
from rgbtad.core.timebase import SnippetGrid
from rgbtad.data.detections import Detections
from rgbtad.detection.actionformer import model_config_errors
from rgbtad.detection.registry import register_model
from rgbtad.detection.tadtr_attention import sine_position_encoding
from rgbtad.detection.tadtr_loss import SetCriterion
from rgbtad.detection.tadtr_matcher import HungarianMatcher, bounds_to_cw
from rgbtad.detection.tadtr_postprocess import fuse_windows, test_windows, window_top_k
from rgbtad.detection.tadtr_roi import ActionnessHead
from rgbtad.detection.tadtr_transformer import ACTIVATIONS, DeformableTransformer, refine_segments

__all__ = ["TadTR", "TadTROutput", "TadTRSpec", "build_tadtr", "convert_release_state_dict", "spec_from_config"]

PROJECTION_NAMES = ("reference_points", "sampling_offsets")  # the release's lr_linear_proj_names


@dataclass(frozen=True)
class TadTRSpec:
    """TadTR's hyper-parameters (the release's names where it has them; ``window`` is its
    ``slice_len``, ``topk`` its ``postproc_ins_topk``)."""

    input_dim: int
    num_classes: int
    window: int
    hidden_dim: int = 256
    num_heads: int = 8
    enc_layers: int = 4
    dec_layers: int = 4
    dim_feedforward: int = 1024
    dropout: float = 0.1
    activation: str = "relu"
    enc_n_points: int = 4
    dec_n_points: int = 4
    num_queries: int = 40
    seg_refine: bool = True
    act_reg: bool = True
    query_self_attention: bool = True
    use_pos_embed: bool = True
    mask_padding: bool = False
    aux_loss: bool = True
    set_cost_class: float = 6.0
    set_cost_seg: float = 5.0
    set_cost_iou: float = 2.0
    cls_loss_coef: float = 2.0
    seg_loss_coef: float = 5.0
    iou_loss_coef: float = 2.0
    act_loss_coef: float = 4.0
    focal_alpha: float = 0.25
    topk: int = 100
    test_overlap: float = 0.25
    fusion_nms_threshold: float = 0.4
    learning_rate: float = 2e-4
    lr_linear_proj_mult: float = 0.1

    def __post_init__(self) -> None:
        if self.hidden_dim % 32 != 0:
            raise ValueError(f"hidden_dim {self.hidden_dim} must be a multiple of 32 (the input GroupNorm's groups)")
        if self.hidden_dim % self.num_heads != 0:
            raise ValueError(f"hidden_dim {self.hidden_dim} is not divisible by num_heads {self.num_heads}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r} (known: {', '.join(ACTIVATIONS)})")
        if not 0 <= self.test_overlap < 1:
            raise ValueError(f"test_overlap must lie in [0, 1), got {self.test_overlap}")
        for name in ("input_dim", "num_classes", "window", "enc_layers", "dec_layers", "num_queries", "topk"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

    def loss_weights(self) -> dict[str, float]:
        return {"loss_ce": self.cls_loss_coef, "loss_segments": self.seg_loss_coef,
                "loss_iou": self.iou_loss_coef, "loss_actionness": self.act_loss_coef}


@dataclass
class TadTROutput:
    """Per window (``N`` of them; in training one per video): per decoder layer ``logits``
    ``N x Q x K``, ``segments`` ``N x Q x 2`` (centre, width as fractions of ``scale``) and
    ``query_feats`` ``N x Q x D``; ``actionness`` ``N x Q x 1`` or None; ``memory`` the
    encoder output ``N x D x window``; ``video`` (``N``, which input video), ``start`` /
    ``end`` (the window's steps in it) and ``scale`` (steps per unit of the coordinates)."""

    logits: list[torch.Tensor]
    segments: list[torch.Tensor]
    query_feats: list[torch.Tensor]
    actionness: torch.Tensor | None
    memory: torch.Tensor
    video: torch.Tensor
    start: torch.Tensor
    end: torch.Tensor
    scale: torch.Tensor
    windows: list[list[tuple[int, int]]] = field(default_factory=list)


class TadTR(nn.Module):
    """The detector (a `rgbtad.detection.protocol.Detector`); parts as the release names them:
    ``input_proj``, ``transformer``, ``query_embed``, ``class_embed``, ``segment_embed``,
    ``actionness`` (None without the actionness branch)."""

    training_inputs: tuple[str, ...] = ()
    strides = [1]
    max_div_factor = 1

    def __init__(self, spec: TadTRSpec):
        super().__init__()
        self.spec = spec
        s = spec
        self.transformer = DeformableTransformer(
            s.hidden_dim, s.num_heads, s.enc_layers, s.dec_layers, s.dim_feedforward, s.dropout, s.activation,
            s.enc_n_points, s.dec_n_points, s.query_self_attention, s.use_pos_embed)
        class_embed = nn.Linear(s.hidden_dim, s.num_classes)
        segment_embed = SegmentMLP(s.hidden_dim, 2, 3)
        self.query_embed = nn.Embedding(s.num_queries, s.hidden_dim * 2)
        self.input_proj = nn.Sequential(nn.Conv1d(s.input_dim, s.hidden_dim, 1), nn.GroupNorm(32, s.hidden_dim))
        nn.init.constant_(class_embed.bias, -math.log((1 - 0.01) / 0.01))
        nn.init.constant_(segment_embed.layers[-1].weight, 0)
        nn.init.constant_(segment_embed.layers[-1].bias, 0)
        nn.init.xavier_uniform_(self.input_proj[0].weight, gain=1)
        nn.init.constant_(self.input_proj[0].bias, 0)
        copies = s.dec_layers if s.seg_refine else 1  # without refinement every layer shares one head
        self.class_embed = nn.ModuleList(copy.deepcopy(class_embed) for _ in range(copies))
        self.segment_embed = nn.ModuleList(copy.deepcopy(segment_embed) for _ in range(copies))
        nn.init.constant_(self.segment_embed[0].layers[-1].bias[1:], -2.0)
        self.actionness = ActionnessHead(s.hidden_dim) if s.act_reg else None
        weights = s.loss_weights()
        self.criterion = SetCriterion(s.num_classes, HungarianMatcher(s.set_cost_class, s.set_cost_seg,
                                                                      s.set_cost_iou), weights, s.focal_alpha)
        layers = s.dec_layers if s.aux_loss else 1
        self.loss_names = tuple(self.criterion.names(layers, s.act_reg))
        self._normalizer = 1.0

    # ------------------------------------------------------------------ protocol
    def check_length(self, length: int) -> None:
        """Training inputs are one window each; evaluation takes any length."""
        if self.training and length != self.spec.window:
            raise ValueError(f"a training input must be one window of {self.spec.window} steps "
                             f"(data.max_seq_len), got {length}")

    @property
    def loss_normalizer(self) -> float:
        return self._normalizer

    def param_groups(self, weight_decay: float) -> list[dict]:
        named = sorted(self.named_parameters())
        slow = [p for n, p in named if any(key in n for key in PROJECTION_NAMES)]
        rest = [p for n, p in named if not any(key in n for key in PROJECTION_NAMES)]
        return [{"params": rest, "weight_decay": weight_decay},
                {"params": slow, "weight_decay": weight_decay,
                 "lr": self.spec.learning_rate * self.spec.lr_linear_proj_mult}]

    def forward(self, feats: torch.Tensor, masks: torch.Tensor) -> TadTROutput:
        """``B x C x L`` features, ``B x L`` bool masks: training, one window per video
        (``L`` the window); eval, every video cut into its test windows."""
        if feats.dim() != 3 or masks.dim() != 2 or feats.shape[0] != masks.shape[0] \
                or feats.shape[-1] != masks.shape[-1]:
            raise ValueError(f"expected B x C x L features and B x L masks, got "
                             f"{tuple(feats.shape)} and {tuple(masks.shape)}")
        if feats.shape[1] != self.spec.input_dim:
            raise ValueError(f"the features have {feats.shape[1]} channels but the detector expects "
                             f"{self.spec.input_dim} (data.input_dim)")
        self.check_length(feats.shape[-1])
        masks = masks.bool()
        lengths = [int(n) for n in masks.sum(1).tolist()]
        window = self.spec.window
        if self.training:
            windows = [[(0, window)] for _ in lengths]
        else:
            windows = [test_windows(max(n, 1), window, self.spec.test_overlap) for n in lengths]
        rows = [(v, s, e) for v, spans in enumerate(windows) for s, e in spans]
        x = feats.new_zeros(len(rows), feats.shape[1], window)
        valid = torch.zeros(len(rows), window, dtype=torch.bool, device=feats.device)
        for i, (v, s, e) in enumerate(rows):
            e = min(e, feats.shape[-1])
            x[i, :, :e - s] = feats[v, :, s:e] * masks[v, s:e]
            valid[i, :e - s] = masks[v, s:e]
        out = self.run_windows(x, valid)
        out.video = torch.tensor([r[0] for r in rows], device=feats.device)
        out.start = torch.tensor([float(r[1]) for r in rows], device=feats.device)
        out.end = torch.tensor([float(r[2]) for r in rows], device=feats.device)
        out.windows = windows
        return out

    def run_windows(self, x: torch.Tensor, valid: torch.Tensor) -> TadTROutput:
        """The release model on ``N x C x window`` windows (``valid`` ``N x window``)."""
        s = self.spec
        num, _, window = x.shape
        padding = ~valid if s.mask_padding else torch.zeros_like(valid)
        src = self.input_proj(x)
        pos = sine_position_encoding(~padding, s.hidden_dim)
        valid_ratio = (~padding).sum(1).float() / window
        memory = self.transformer.encode(src.transpose(1, 2), pos.transpose(1, 2), padding, valid_ratio)
        decoded = self.transformer.decode(memory, padding, valid_ratio, self.query_embed.weight,
                                          self.segment_embed if s.seg_refine else None)
        logits, segments = [], []
        for layer, hidden in enumerate(decoded.hidden):
            head = min(layer, len(self.class_embed) - 1)
            logits.append(self.class_embed[head](hidden))
            if decoded.segments is not None:
                segments.append(decoded.segments[layer])
            else:
                segments.append(refine_segments(self.segment_embed[head](hidden), decoded.references[layer]))
        memory = memory.transpose(1, 2)
        actionness = self.actionness(memory, segments[-1]) if self.actionness is not None else None
        scale = (~padding).sum(1).float() if s.mask_padding else torch.full((num,), float(window), device=x.device)
        empty = torch.zeros(num, device=x.device)
        return TadTROutput(logits, segments, list(decoded.hidden), actionness, memory,
                           video=torch.arange(num, device=x.device), start=empty, end=empty + window, scale=scale)

    def losses(self, out: TadTROutput, gt_segments: list[torch.Tensor],
               gt_labels: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """The release's losses of a training-mode output; ground truth on the input grid."""
        if not isinstance(out, TadTROutput):
            raise TypeError(f"TadTR's losses need its own TadTROutput, got {type(out).__name__}")
        if len(gt_segments) != out.video.numel() or not torch.equal(out.video.cpu(), torch.arange(len(gt_segments))):
            raise ValueError(f"losses need a training-mode output with one window per video: "
                             f"{out.video.numel()} windows for {len(gt_segments)} videos")
        targets = [bounds_to_cw(segs.float().reshape(-1, 2) / out.scale[i]) for i, segs in enumerate(gt_segments)]
        self._normalizer = max(float(sum(len(x) for x in gt_labels)), 1.0)
        if self.spec.aux_loss:
            return self.criterion(out.logits, out.segments, out.actionness, targets, gt_labels)
        return self.criterion(out.logits[-1:], out.segments[-1:], out.actionness, targets, gt_labels)

    @torch.no_grad()
    def postprocess(self, out: TadTROutput, metas: list[dict]) -> list[Detections]:
        """Detections per video, in seconds, best first: per-window top-k, merged across
        windows (`fuse_windows`), clipped to the video."""
        if not out.windows or len(metas) != len(out.windows):
            raise ValueError(f"{len(metas)} metas for an output of {len(out.windows)} videos")
        results = []
        for index, meta in enumerate(metas):
            rows = []
            for w in torch.nonzero(out.video == index).flatten().tolist():
                scores, labels, bounds = window_top_k(
                    out.logits[-1][w], out.segments[-1][w],
                    None if out.actionness is None else out.actionness[w], self.spec.topk)
                bounds = bounds * out.scale[w] + out.start[w]
                rows.append(torch.cat([bounds, scores[:, None], labels[:, None].to(bounds.dtype)], 1))
            dets = torch.cat(rows).double().cpu().numpy()
            spans = [(int(a), int(b)) for a, b in zip(out.start[out.video == index].tolist(),
                                                       out.end[out.video == index].tolist())]
            dets = fuse_windows(dets, spans, self.spec.fusion_nms_threshold)
            results.append(_to_detections(dets, meta))
        return results


class SegmentMLP(nn.Module):
    """The release's ``MLP``: ``num_layers`` linear layers (key ``layers``), ReLU between."""

    def __init__(self, dim: int, out_dim: int, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(dim, out_dim if i == num_layers - 1 else dim)
                                    for i in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers[:-1]:
            x = torch.relu(layer(x))
        return self.layers[-1](x)


def _to_detections(dets: np.ndarray, meta: dict) -> Detections:
    grid = SnippetGrid(float(meta["feat_stride"]), float(meta["feat_num_frames"]), float(meta["fps"]))
    duration = float(meta["duration"])
    order = np.argsort(-dets[:, 2], kind="stable")
    dets = dets[order]
    segs = np.clip(np.asarray(grid.to_seconds(dets[:, :2]), dtype=np.float64).reshape(-1, 2), 0.0, duration)
    keep = segs[:, 1] > segs[:, 0]
    return Detections(str(meta["video_id"]), segs[keep], dets[keep, 2].astype(np.float32),
                      dets[keep, 3].astype(np.int64))


def convert_release_state_dict(state: dict[str, torch.Tensor], model: TadTR) -> dict[str, torch.Tensor]:
    """A release state dict (``module.`` prefixes allowed) under our keys: the decoder's
    alias of the segment heads and the repeated heads of a model without refinement are
    dropped, ``input_proj.0.*`` loses its level index, ``actionness_pred`` moves under
    ``actionness``."""
    ours = {}
    shared = not model.spec.seg_refine
    for key, value in state.items():
        key = key[len("module."):] if key.startswith("module.") else key
        if key.startswith("transformer.decoder.segment_embed."):
            continue
        head, _, rest = key.partition(".")
        if head in ("class_embed", "segment_embed") and shared and not rest.startswith("0."):
            continue
        if key.startswith("input_proj.0."):
            key = "input_proj." + key[len("input_proj.0."):]
        elif head == "actionness_pred":
            key = "actionness." + key
        ours[key] = value
    return ours


#: TadTRSpec fields read from the config's ``tadtr`` section
_TADTR_KEYS = ("hidden_dim", "num_heads", "enc_layers", "dec_layers", "dim_feedforward", "dropout", "activation",
               "enc_n_points", "dec_n_points", "num_queries", "seg_refine", "act_reg", "query_self_attention",
               "use_pos_embed", "mask_padding", "aux_loss", "set_cost_class", "set_cost_seg", "set_cost_iou",
               "cls_loss_coef", "seg_loss_coef", "iou_loss_coef", "act_loss_coef", "focal_alpha", "topk",
               "test_overlap", "fusion_nms_threshold", "lr_linear_proj_mult")


def spec_from_config(cfg, num_classes: int, input_dim: int | None = None) -> TadTRSpec:
    """`TadTRSpec` from a config: TadTR's keys from ``tadtr``, the window from
    ``data.max_seq_len``, the base learning rate from ``train``. Errors are `RgbtadError`."""
    if num_classes <= 0:
        raise RgbtadError(f"the detector needs at least one class, got {num_classes}")
    own = {key: getattr(cfg.tadtr, key) for key in _TADTR_KEYS}
    with model_config_errors():
        return TadTRSpec(input_dim=cfg.data.input_dim if input_dim is None else input_dim, num_classes=num_classes,
                         window=cfg.data.max_seq_len, learning_rate=cfg.train.learning_rate, **own)


@register_model("tadtr")
def build_tadtr(cfg, num_classes: int, *, input_dim: int | None = None) -> TadTR:
    """`TadTR` from a config (`spec_from_config`); `input_dim` overrides ``data.input_dim``."""
    spec = spec_from_config(cfg, num_classes, input_dim)
    with model_config_errors():
        return TadTR(spec)
