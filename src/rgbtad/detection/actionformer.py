"""The ActionFormer detector family: projection -> encoder -> neck -> heads.

Release counterpart: ``PtTransformer`` (``libs/modeling/meta_archs.py``), split here by
anatomy. The forward pass only predicts; ``losses`` and ``postprocess`` are separate calls
(the `rgbtad.detection.protocol.Detector` interface)::

    out = model(feats, masks)                      # B x C x L features, B x L bool masks
    losses = model.losses(out, gt_segments, gt_labels)
    detections = model.postprocess(out, metas)

`ActionFormerSpec` holds the hyper-parameters and builds the parts, one public factory
each (``build_embed``, ``build_encoder``, ``build_neck``, ``build_cls_head``,
``build_reg_head``, ``build_criterion``); ``build_parts`` builds the five modules of one
detector in the release's creation order, so that under one seed the random
initialisation consumes the generator as the release does. `ActionFormer` is the whole
detector; `PyramidHead` is its neck, heads, loss and post-processing alone, on an encoder
pyramid computed elsewhere (a student that fuses two encoders' pyramids). Both run their
stages through public methods (``predict``, ``run_heads``; ActionFormer also ``encode``).

The family registers itself as ``"actionformer"`` (`build_actionformer`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from rgbtad.core.errors import RgbtadError
from rgbtad.data.detections import Detections
from rgbtad.detection.encoders import ConvEmbedding, ConvEncoder, TransformerEncoder, zero_conv_biases
from rgbtad.detection.heads import ClsHead, RegHead
from rgbtad.detection.losses import DetectionLoss
from rgbtad.detection.necks import FPNNeck, IdentityNeck
from rgbtad.detection.param_groups import decay_param_groups
from rgbtad.detection.points import level_points, pyramid_strides
from rgbtad.detection.postprocess import NMSConfig, postprocess_video
from rgbtad.detection.protocol import DetectorOutput
from rgbtad.detection.registry import register_model, register_pyramid_head

__all__ = ["ActionFormer", "ActionFormerParts", "ActionFormerSpec", "PyramidHead", "build_actionformer",
           "build_actionformer_head", "max_div_factor", "model_config_errors", "spec_from_config"]

BACKBONES = ("transformer", "conv", "conv_dw")  # conv_dw: depthwise-separable (C2MS), heads standard
NECKS = ("identity", "fpn")


def max_div_factor(strides: list[int], windows: list[int]) -> int:
    """What inference inputs are padded to a multiple of: ``max_l s_l * (w_l // 2) * 2``
    (``s_l`` for global attention). Like the release, strides and windows are paired from
    the first entry of each list (this only matters with a neck start level > 0)."""
    factor = 1
    for stride, window in zip(strides, windows):
        factor = max(factor, stride * (window // 2) * 2 if window > 1 else stride)
    return factor


class ActionFormerParts(NamedTuple):
    """The five modules of one detector, in creation order."""

    embed: ConvEmbedding
    encoder: nn.Module
    neck: nn.Module
    cls_head: ClsHead
    reg_head: RegHead


@dataclass(frozen=True)
class ActionFormerSpec:
    """ActionFormer's hyper-parameters, built by `from_config` from the ``rgbtad.config`` keys
    of the same names (the defaults live there, once); invalid combinations raise
    ``ValueError`` on construction."""

    input_dim: int
    num_classes: int
    max_seq_len: int
    backbone: str
    arch: tuple[int, int, int]
    scale_factor: int
    embd_dim: int
    embd_kernel_size: int
    embd_with_ln: bool
    n_head: int
    window: int | tuple[int, ...]
    use_abs_pe: bool
    use_rel_pe: bool
    dropout: float
    droppath: float
    fpn_type: str
    fpn_dim: int
    fpn_with_ln: bool
    fpn_start_level: int
    head_dim: int
    head_num_layers: int
    head_kernel_size: int
    head_with_ln: bool
    regression_range: tuple
    cls_prior_prob: float
    head_empty_cls: tuple[int, ...]
    center_sample: str
    center_sample_radius: float
    loss_weight: float
    label_smoothing: float
    init_loss_norm: float
    nms: NMSConfig

    def __post_init__(self) -> None:
        if len(self.regression_ranges) != len(self.strides):
            raise ValueError(f"{len(self.strides)} pyramid levels but "
                             f"{len(self.regression_ranges)} regression ranges")
        if len(self.windows) != self.num_levels:
            raise ValueError(f"{self.num_levels} pyramid levels but {len(self.windows)} window sizes")
        for stride, win in zip(self.strides, self.windows):
            step = stride * (win // 2) * 2 if win > 1 else stride
            if self.max_seq_len % step != 0:
                raise ValueError(f"max_seq_len {self.max_seq_len} must be divisible by {step} "
                                 f"(level stride {stride} x window {win})")
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}")
        if self.fpn_type not in NECKS:
            raise ValueError(f"unknown neck {self.fpn_type!r}")

    @classmethod
    def from_config(cls, cfg, num_classes: int, input_dim: int | None = None) -> "ActionFormerSpec":
        """From an ``rgbtad.config.Config``; `input_dim` overrides ``data.input_dim``."""
        m, t, d, s = cfg.model, cfg.train, cfg.data, cfg.test
        nms = NMSConfig.from_config(s)
        window = m.n_mha_win_size if isinstance(m.n_mha_win_size, int) else tuple(m.n_mha_win_size)
        return cls(
            input_dim=d.input_dim if input_dim is None else input_dim,
            num_classes=num_classes, max_seq_len=d.max_seq_len,
            backbone=m.backbone, arch=tuple(m.arch), scale_factor=m.scale_factor,
            embd_dim=m.embd_dim, embd_kernel_size=m.embd_kernel_size,
            embd_with_ln=m.embd_with_ln, n_head=m.n_head, window=window,
            use_abs_pe=m.use_abs_pe, use_rel_pe=m.use_rel_pe, dropout=t.dropout,
            droppath=t.droppath, fpn_type=m.fpn_type, fpn_dim=m.fpn_dim,
            fpn_with_ln=m.fpn_with_ln, fpn_start_level=m.fpn_start_level,
            head_dim=m.head_dim, head_num_layers=m.head_num_layers,
            head_kernel_size=m.head_kernel_size, head_with_ln=m.head_with_ln,
            regression_range=tuple(tuple(r) for r in m.regression_range),
            cls_prior_prob=t.cls_prior_prob, head_empty_cls=tuple(t.head_empty_cls),
            center_sample=t.center_sample, center_sample_radius=t.center_sample_radius,
            loss_weight=t.loss_weight, label_smoothing=t.label_smoothing,
            init_loss_norm=t.init_loss_norm, nms=nms,
        )

    # ------------------------------------------------------------------ derived
    @property
    def num_levels(self) -> int:
        return self.arch[2] + 1

    @property
    def strides(self) -> list[int]:
        return pyramid_strides(self.scale_factor, self.num_levels, self.fpn_start_level)

    @property
    def windows(self) -> list[int]:
        return [self.window] * self.num_levels if isinstance(self.window, int) else list(self.window)

    @property
    def regression_ranges(self) -> list[tuple[float, float]]:
        return [tuple(float(v) for v in r) for r in self.regression_range]

    @property
    def max_div_factor(self) -> int:
        return max_div_factor(self.strides, self.windows)

    def check_length(self, length: int) -> None:
        """Raise ValueError unless every pyramid level and attention window divides `length`."""
        for level, win in enumerate(self.windows):
            step = self.scale_factor ** level * ((win // 2) * 2 if win > 1 else 1)
            if length % step != 0:
                raise ValueError(
                    f"input length {length} is not divisible by {step} (pyramid level {level}, "
                    f"window {win}); pad to max_seq_len or a multiple of max_div_factor "
                    f"({self.max_div_factor})")

    # ------------------------------------------------------------------ parts
    def build_embed(self) -> ConvEmbedding:
        """The projection: ``arch[0]`` x (masked conv -> LayerNorm -> ReLU) to ``embd_dim``."""
        embed = ConvEmbedding(self.input_dim, self.embd_dim, self.arch[0], self.embd_kernel_size,
                              self.embd_with_ln, max_len=self.max_seq_len,
                              abs_pe=self.use_abs_pe and self.backbone == "transformer",
                              separable=self.backbone == "conv_dw")
        zero_conv_biases(embed)
        return embed

    def build_encoder(self) -> nn.Module:
        """The encoder: projected features -> a pyramid of ``num_levels`` levels."""
        if self.backbone == "transformer":
            encoder = TransformerEncoder(self.embd_dim, self.n_head, self.arch[1], self.arch[2], self.windows,
                                         self.scale_factor, self.dropout, self.droppath, self.use_rel_pe)
        else:
            encoder = ConvEncoder(self.embd_dim, self.arch[1], self.arch[2], self.scale_factor,
                                  separable=self.backbone == "conv_dw")
        zero_conv_biases(encoder)
        return encoder

    def build_neck(self) -> nn.Module:
        in_dims = [self.embd_dim] * self.num_levels
        if self.fpn_type == "fpn":
            return FPNNeck(in_dims, self.fpn_dim, self.scale_factor, self.fpn_start_level, self.fpn_with_ln)
        return IdentityNeck(in_dims, self.fpn_dim, self.fpn_start_level, self.fpn_with_ln)

    def build_cls_head(self) -> ClsHead:
        return ClsHead(self.fpn_dim, self.head_dim, self.num_classes, self.head_num_layers,
                       self.head_kernel_size, self.head_with_ln, self.cls_prior_prob, list(self.head_empty_cls))

    def build_reg_head(self) -> RegHead:
        return RegHead(self.fpn_dim, self.head_dim, len(self.strides), self.head_num_layers,
                       self.head_kernel_size, self.head_with_ln)

    def build_criterion(self) -> DetectionLoss:
        return DetectionLoss(self.num_classes, self.init_loss_norm, 0.9, self.loss_weight,
                             self.label_smoothing, self.center_sample, self.center_sample_radius)

    def build_parts(self) -> ActionFormerParts:
        """The five modules of one detector, created in the release's order (backbone,
        neck, heads) so that seeded initialisations match it."""
        embed = self.build_embed()
        encoder = self.build_encoder()
        neck = self.build_neck()
        return ActionFormerParts(embed, encoder, neck, self.build_cls_head(), self.build_reg_head())


class _Predictor(nn.Module):
    """Neck, heads, loss and post-processing, shared by `ActionFormer` and `PyramidHead`;
    registers the `parts` named in `stages` (in that order), then the criterion."""

    loss_names = ("cls_loss", "reg_loss", "final_loss")
    training_inputs: tuple[str, ...] = ()

    def __init__(self, spec: ActionFormerSpec, parts: ActionFormerParts, stages: tuple[str, ...]):
        super().__init__()
        self.spec = spec
        self.num_classes = spec.num_classes
        self.max_seq_len = spec.max_seq_len
        self.scale_factor = spec.scale_factor
        self.strides = spec.strides
        self.regression_range = spec.regression_ranges
        self.windows = spec.windows
        self.max_div_factor = spec.max_div_factor
        self.nms = spec.nms
        for name in stages:
            setattr(self, name, getattr(parts, name))
        self.criterion = spec.build_criterion()

    def check_length(self, length: int) -> None:
        self.spec.check_length(length)

    def predict(self, pyramid: list[torch.Tensor], pyramid_masks: list[torch.Tensor]) -> DetectorOutput:
        """Neck + heads on an encoder pyramid (masks ``B x 1 x T_l``)."""
        fpn_feats, fpn_masks = self.neck(pyramid, pyramid_masks)
        return self.run_heads(fpn_feats, fpn_masks, pyramid)

    def run_heads(self, fpn_feats: list[torch.Tensor], fpn_masks: list[torch.Tensor],
                  pyramid: list[torch.Tensor]) -> DetectorOutput:
        """The classification and regression heads on neck features (masks ``B x 1 x T_l``);
        ``pyramid`` is only passed through as ``encoder_feats``."""
        logits = self.cls_head(fpn_feats, fpn_masks)
        offsets = self.reg_head(fpn_feats, fpn_masks)
        points = level_points([f.shape[-1] for f in fpn_feats], self.strides,
                              self.regression_range, fpn_feats[0].device)
        return DetectorOutput(
            cls_logits=[x.permute(0, 2, 1) for x in logits],
            offsets=[x.permute(0, 2, 1) for x in offsets],
            masks=[m.squeeze(1) for m in fpn_masks],
            points=points,
            feats=list(fpn_feats),
            encoder_feats=list(pyramid),
        )

    def losses(self, out: DetectorOutput, gt_segments: list[torch.Tensor],
               gt_labels: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """``cls_loss``, ``reg_loss`` and ``final_loss``; the loss normaliser's EMA moves
        only in training mode."""
        return self.criterion(out.cls_logits, out.offsets, out.masks, out.points,
                              gt_segments, gt_labels, update_normalizer=self.training)

    @property
    def loss_normalizer(self) -> float:
        """The EMA of the number of positives that divides the losses (as last updated)."""
        return float(self.criterion.normalizer)

    def param_groups(self, weight_decay: float) -> list[dict]:
        return decay_param_groups(self, weight_decay)

    @torch.no_grad()
    def postprocess(self, out: DetectorOutput, metas: list[dict]) -> list[Detections]:
        """The detections of every video, in seconds, sorted by score and capped at
        ``max_seg_num``."""
        if len(metas) != out.cls_logits[0].shape[0]:
            raise ValueError(f"{len(metas)} metas for a batch of {out.cls_logits[0].shape[0]}")
        results = []
        for index, meta in enumerate(metas):
            results.append(postprocess_video(
                [x[index] for x in out.cls_logits], [x[index] for x in out.offsets],
                [x[index] for x in out.masks], out.points, meta, self.nms,
            ))
        return results


class ActionFormer(_Predictor):
    """The whole detector (a `rgbtad.detection.protocol.PyramidDetector`); public parts:
    ``embed``, ``encoder``, ``neck``, ``cls_head``, ``reg_head``, ``criterion``."""

    def __init__(self, spec: ActionFormerSpec):
        super().__init__(spec, spec.build_parts(), ("embed", "encoder", "neck", "cls_head", "reg_head"))

    def encode(self, feats: torch.Tensor, masks: torch.Tensor):
        """Projection + encoder: ``B x C x L`` features and ``B x L`` masks -> the pyramid
        ``(feats, masks)`` before the neck (masks ``B x 1 x T_l``)."""
        if feats.dim() != 3 or masks.dim() != 2 or feats.shape[0] != masks.shape[0] \
                or feats.shape[-1] != masks.shape[-1]:
            raise ValueError(f"expected B x C x L features and B x L masks, got "
                             f"{tuple(feats.shape)} and {tuple(masks.shape)}")
        mask = masks.bool().unsqueeze(1)
        x, mask = self.embed(feats, mask)
        return self.encoder(x, mask)

    def forward(self, feats: torch.Tensor, masks: torch.Tensor) -> DetectorOutput:
        self.check_length(feats.shape[-1])
        pyramid, pyramid_masks = self.encode(feats, masks)
        return self.predict(pyramid, pyramid_masks)


class PyramidHead(_Predictor):
    """ActionFormer's neck, heads, loss and post-processing on an encoder pyramid computed
    elsewhere: ``forward(pyramid, pyramid_masks)`` (masks ``B x 1 x T_l``) is ``predict``.

    Its random initialisation is that of the neck and heads of ``ActionFormer(spec)`` from
    the same generator state: a whole detector's parts are drawn and the projection and
    encoder dropped (which keeps the seeded initialisation of students trained before this
    class existed, when it was an ActionFormer without them)."""

    def __init__(self, spec: ActionFormerSpec):
        super().__init__(spec, spec.build_parts(), ("neck", "cls_head", "reg_head"))

    def forward(self, pyramid: list[torch.Tensor], pyramid_masks: list[torch.Tensor]) -> DetectorOutput:
        return self.predict(pyramid, pyramid_masks)


@contextlib.contextmanager
def model_config_errors() -> Iterator[None]:
    """A ``ValueError`` from building a detector becomes a one-line config error."""
    try:
        yield
    except ValueError as err:
        raise RgbtadError(f"model config: {err}") from None


def spec_from_config(cfg, num_classes: int, input_dim: int | None = None) -> ActionFormerSpec:
    """`ActionFormerSpec.from_config`, with config errors as `RgbtadError`."""
    if num_classes <= 0:
        raise RgbtadError(f"the detector needs at least one class, got {num_classes}")
    with model_config_errors():
        return ActionFormerSpec.from_config(cfg, num_classes, input_dim)


@register_pyramid_head("actionformer")
def build_actionformer_head(cfg, num_classes: int, *, input_dim: int) -> PyramidHead:
    """`PyramidHead` from a config, for encoder pyramids of `input_dim` channels."""
    spec = spec_from_config(cfg, num_classes, input_dim)
    with model_config_errors():
        return PyramidHead(spec)


@register_model("actionformer")
def build_actionformer(cfg, num_classes: int, *, input_dim: int | None = None) -> ActionFormer:
    """`ActionFormer` from an ``rgbtad.config.Config``; `input_dim` overrides
    ``data.input_dim`` (a detector inside a distillation student)."""
    spec = spec_from_config(cfg, num_classes, input_dim)
    with model_config_errors():
        return ActionFormer(spec)
