"""The TriDet detector family (Shi et al., CVPR 2023): projection -> SGP encoder -> neck ->
classification head + Trident head.

Release counterpart: ``TriDet`` (``libs/modeling/meta_archs.py`` of dingfengshi/TriDet, a
fork of ActionFormer's), split by anatomy like `rgbtad.detection.actionformer`, whose parts
it shares where the release does: the projection convs (`ConvEmbedding`), the conv encoder
(backbone ``conv``), the necks, the classification head (`ClsHead`, also the two boundary
heads, on detached features), the regression head (`RegHead`, with ``2 (num_bins + 1)``
outputs: the centre-offset bins), points, label assignment, focal / DIoU losses and NMS.
Its own parts: the SGP encoder (`rgbtad.detection.sgp`), the Trident decoding
(`rgbtad.detection.trident`) and its loss (`rgbtad.detection.trident_loss`). The protocol
is `rgbtad.detection.protocol.PyramidDetector`'s::

    out = model(feats, masks)                      # a TriDetOutput
    losses = model.losses(out, gt_segments, gt_labels)
    detections = model.postprocess(out, metas)

`TriDetSpec` holds the hyper-parameters (the release's names, ``boudary_kernel_size`` spelt
``boundary_kernel_size``, ``n_sgp_win_size`` ``sgp_win_size``, ``k`` ``sgp_k``) and builds
the parts in the release's creation order, so that under one seed the random
initialisation consumes the generator as the release does. With ``use_trident_head`` False
(the release's ablation) the regression head predicts two offsets, decoded and trained as
ActionFormer's. Registered as ``"tridet"`` (`build_tridet`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from rgbtad.core.errors import RgbtadError
from rgbtad.data.detections import Detections
from rgbtad.detection.actionformer import model_config_errors
from rgbtad.detection.encoders import ConvEmbedding, ConvEncoder, zero_conv_biases
from rgbtad.detection.heads import ClsHead, RegHead
from rgbtad.detection.losses import DetectionLoss
from rgbtad.detection.necks import FPNNeck, IdentityNeck
from rgbtad.detection.param_groups import decay_param_groups
from rgbtad.detection.points import level_points, pyramid_strides
from rgbtad.detection.postprocess import NMSConfig, postprocess_video
from rgbtad.detection.protocol import DetectorOutput
from rgbtad.detection.registry import register_model, register_pyramid_head
from rgbtad.detection.sgp import DOWNSAMPLE_TYPES, SGPEncoder
from rgbtad.detection.trident import TriDetOutput, batch_class_offsets, best_class_offsets, video_class_offsets
from rgbtad.detection.trident_loss import TridentLoss

__all__ = ["TriDet", "TriDetParts", "TriDetPyramidHead", "TriDetSpec", "build_tridet", "build_tridet_head",
           "spec_from_config"]

BACKBONES = ("sgp", "conv")
NECKS = ("identity", "fpn")


class TriDetParts(NamedTuple):
    """The modules of one detector, in creation order (no boundary heads without the
    Trident head)."""

    embed: ConvEmbedding
    encoder: nn.Module
    neck: nn.Module
    cls_head: ClsHead
    start_head: ClsHead | None
    end_head: ClsHead | None
    reg_head: RegHead


@dataclass(frozen=True)
class TriDetSpec:
    """TriDet's hyper-parameters (every one required); invalid combinations raise
    ``ValueError`` on construction. ``nms.voting_iou_weight`` should be False: the release
    weights its segment voting by the score alone (`spec_from_config` sets it)."""

    input_dim: int
    num_classes: int
    max_seq_len: int
    backbone: str
    arch: tuple[int, int, int]
    scale_factor: int
    embd_dim: int
    embd_kernel_size: int
    embd_with_ln: bool
    sgp_mlp_dim: int
    sgp_win_size: int | tuple[int, ...]
    sgp_k: float
    init_conv_vars: float
    downsample_type: str
    use_abs_pe: bool
    droppath: float
    input_noise: float
    fpn_type: str
    fpn_dim: int
    fpn_with_ln: bool
    head_dim: int
    head_num_layers: int
    head_kernel_size: int
    boundary_kernel_size: int
    head_with_ln: bool
    use_trident_head: bool
    num_bins: int
    iou_weight_power: float
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
        if len(self.regression_ranges) != self.num_levels:
            raise ValueError(f"{self.num_levels} pyramid levels but {len(self.regression_ranges)} regression ranges")
        if len(self.windows) != self.num_levels:
            raise ValueError(f"{self.num_levels} pyramid levels but {len(self.windows)} SGP window sizes")
        for name, value, known in (("backbone", self.backbone, BACKBONES), ("neck", self.fpn_type, NECKS),
                                   ("SGP downsample type", self.downsample_type, DOWNSAMPLE_TYPES)):
            if value not in known:
                raise ValueError(f"unknown {name} {value!r} (known: {', '.join(known)})")
        if self.use_trident_head and self.num_bins < 1:
            raise ValueError(f"the Trident head needs num_bins >= 1, got {self.num_bins}")
        top = self.strides[-1]
        if self.max_seq_len % top != 0:
            raise ValueError(f"max_seq_len {self.max_seq_len} must be divisible by the top level's stride {top}")
        if self.max_div_factor % top != 0:
            raise ValueError(f"the SGP windows {self.windows} give a padding multiple {self.max_div_factor} "
                             f"that the top level's stride {top} does not divide")

    # ------------------------------------------------------------------ derived
    @property
    def num_levels(self) -> int:
        return self.arch[2] + 1

    @property
    def strides(self) -> list[int]:
        return pyramid_strides(self.scale_factor, self.num_levels)

    @property
    def windows(self) -> list[int]:
        return [self.sgp_win_size] * self.num_levels if isinstance(self.sgp_win_size, int) \
            else list(self.sgp_win_size)

    @property
    def regression_ranges(self) -> list[tuple[float, float]]:
        return [tuple(float(v) for v in r) for r in self.regression_range]

    @property
    def max_div_factor(self) -> int:
        """What inference inputs are padded to a multiple of (the release's rule):
        ``max_l s_l * w_l`` (``s_l`` for windows <= 1)."""
        return max(stride * win if win > 1 else stride for stride, win in zip(self.strides, self.windows))

    def check_length(self, length: int) -> None:
        """Raise ValueError unless every pyramid level divides `length`."""
        top = self.strides[-1]
        if length % top != 0:
            raise ValueError(f"input length {length} is not divisible by {top} (the top pyramid level's "
                             f"stride); pad to max_seq_len or a multiple of max_div_factor ({self.max_div_factor})")

    # ------------------------------------------------------------------ parts
    def build_embed(self) -> ConvEmbedding:
        """The projection: ``arch[0]`` x (masked conv -> LayerNorm -> ReLU) to ``embd_dim``,
        plus the absolute position encoding of the SGP backbone when ``use_abs_pe``."""
        embed = ConvEmbedding(self.input_dim, self.embd_dim, self.arch[0], self.embd_kernel_size,
                              self.embd_with_ln, max_len=self.max_seq_len,
                              abs_pe=self.use_abs_pe and self.backbone == "sgp", input_noise=self.input_noise)
        zero_conv_biases(embed)
        return embed

    def build_encoder(self) -> nn.Module:
        if self.backbone == "sgp":
            encoder = SGPEncoder(self.embd_dim, self.arch[1], self.arch[2], self.windows, self.scale_factor,
                                 self.sgp_k, self.sgp_mlp_dim, self.droppath, self.downsample_type,
                                 self.init_conv_vars)
        else:
            encoder = ConvEncoder(self.embd_dim, self.arch[1], self.arch[2], self.scale_factor)
        zero_conv_biases(encoder)
        return encoder

    def build_neck(self) -> nn.Module:
        in_dims = [self.embd_dim] * self.num_levels
        if self.fpn_type == "fpn":
            return FPNNeck(in_dims, self.fpn_dim, self.scale_factor, 0, self.fpn_with_ln)
        return IdentityNeck(in_dims, self.fpn_dim, 0, self.fpn_with_ln)

    def build_cls_head(self, kernel_size: int | None = None) -> ClsHead:
        """The classification head; with `kernel_size` a boundary head (same layout)."""
        return ClsHead(self.fpn_dim, self.head_dim, self.num_classes, self.head_num_layers,
                       self.head_kernel_size if kernel_size is None else kernel_size, self.head_with_ln,
                       self.cls_prior_prob, list(self.head_empty_cls))

    def build_reg_head(self) -> RegHead:
        outputs = 2 * (self.num_bins + 1) if self.use_trident_head else 2
        return RegHead(self.fpn_dim, self.head_dim, self.num_levels, self.head_num_layers,
                       self.head_kernel_size, self.head_with_ln, num_outputs=outputs)

    def build_criterion(self) -> nn.Module:
        if self.use_trident_head:
            return TridentLoss(self.num_classes, self.num_bins, self.init_loss_norm, 0.9, self.loss_weight,
                               self.label_smoothing, self.center_sample, self.center_sample_radius,
                               self.iou_weight_power)
        return DetectionLoss(self.num_classes, self.init_loss_norm, 0.9, self.loss_weight,
                             self.label_smoothing, self.center_sample, self.center_sample_radius)

    def build_parts(self) -> TriDetParts:
        """The modules in the release's creation order (backbone, neck, cls, start, end,
        regression head)."""
        embed = self.build_embed()
        encoder = self.build_encoder()
        neck = self.build_neck()
        cls_head = self.build_cls_head()
        start_head = self.build_cls_head(self.boundary_kernel_size) if self.use_trident_head else None
        end_head = self.build_cls_head(self.boundary_kernel_size) if self.use_trident_head else None
        return TriDetParts(embed, encoder, neck, cls_head, start_head, end_head, self.build_reg_head())


class TriDet(nn.Module):
    """The whole detector (a `rgbtad.detection.protocol.PyramidDetector`); public parts:
    ``embed``, ``encoder``, ``neck``, ``cls_head``, ``start_head`` / ``end_head`` (None
    without the Trident head), ``reg_head``, ``criterion``."""

    loss_names = ("cls_loss", "reg_loss", "final_loss")
    training_inputs: tuple[str, ...] = ()

    def __init__(self, spec: TriDetSpec):
        super().__init__()
        self.spec = spec
        self.num_classes = spec.num_classes
        self.max_seq_len = spec.max_seq_len
        self.strides = spec.strides
        self.max_div_factor = spec.max_div_factor
        self.nms = spec.nms
        self.trident = spec.use_trident_head
        self.num_bins = spec.num_bins if spec.use_trident_head else 0
        parts = spec.build_parts()
        for name, module in parts._asdict().items():
            setattr(self, name, module)
        self.criterion = spec.build_criterion()

    def check_length(self, length: int) -> None:
        self.spec.check_length(length)

    def encode(self, feats: torch.Tensor, masks: torch.Tensor):
        """Projection + encoder: ``B x C x L`` features and ``B x L`` masks -> the pyramid
        ``(feats, masks)`` before the neck (masks ``B x 1 x T_l``). In training mode the
        projection adds Gaussian noise of std ``input_noise`` to every input step (release)."""
        if feats.dim() != 3 or masks.dim() != 2 or feats.shape[0] != masks.shape[0] \
                or feats.shape[-1] != masks.shape[-1]:
            raise ValueError(f"expected B x C x L features and B x L masks, got "
                             f"{tuple(feats.shape)} and {tuple(masks.shape)}")
        mask = masks.bool().unsqueeze(1)
        x, mask = self.embed(feats, mask)
        return self.encoder(x, mask)

    def forward(self, feats: torch.Tensor, masks: torch.Tensor) -> TriDetOutput:
        self.check_length(feats.shape[-1])
        pyramid, pyramid_masks = self.encode(feats, masks)
        return self.predict(pyramid, pyramid_masks)

    def predict(self, pyramid: list[torch.Tensor], pyramid_masks: list[torch.Tensor]) -> TriDetOutput:
        """Neck + heads on an encoder pyramid (masks ``B x 1 x T_l``)."""
        fpn_feats, fpn_masks = self.neck(pyramid, pyramid_masks)
        return self.run_heads(fpn_feats, fpn_masks, pyramid)

    def run_heads(self, fpn_feats: list[torch.Tensor], fpn_masks: list[torch.Tensor],
                  pyramid: list[torch.Tensor]) -> TriDetOutput:
        """The heads on neck features (masks ``B x 1 x T_l``); ``pyramid`` is only passed
        through as ``encoder_feats``."""
        cls_logits = [x.permute(0, 2, 1) for x in self.cls_head(fpn_feats, fpn_masks)]
        start_logits, end_logits = [], []
        if self.trident:
            detached = [x.detach() for x in fpn_feats]  # the boundary heads do not train the features
            start_logits = [x.permute(0, 2, 1) for x in self.start_head(detached, fpn_masks)]
            end_logits = [x.permute(0, 2, 1) for x in self.end_head(detached, fpn_masks)]
        center = [x.permute(0, 2, 1) for x in self.reg_head(fpn_feats, fpn_masks)]
        if self.trident:
            offsets = [best_class_offsets(batch_class_offsets([c], [s], [e], self.num_bins), logits)
                       for c, s, e, logits in zip(center, start_logits, end_logits, cls_logits)]
        else:
            offsets = center
        points = level_points([f.shape[-1] for f in fpn_feats], self.strides, self.spec.regression_ranges,
                              fpn_feats[0].device)
        return TriDetOutput(cls_logits=cls_logits, offsets=offsets, masks=[m.squeeze(1) for m in fpn_masks],
                            points=points, feats=list(fpn_feats), encoder_feats=list(pyramid),
                            center_offsets=center, start_logits=start_logits, end_logits=end_logits,
                            num_bins=self.num_bins)

    def losses(self, out: TriDetOutput, gt_segments: list[torch.Tensor],
               gt_labels: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """``cls_loss``, ``reg_loss`` and ``final_loss``; the loss normaliser's EMA moves
        only in training mode."""
        if self.trident:
            return self.criterion(self._trident_output(out), gt_segments, gt_labels,
                                  update_normalizer=self.training)
        return self.criterion(out.cls_logits, out.offsets, out.masks, out.points, gt_segments, gt_labels,
                              update_normalizer=self.training)

    @property
    def loss_normalizer(self) -> float:
        """The EMA of the number of positive points that divides the losses."""
        return float(self.criterion.normalizer)

    def param_groups(self, weight_decay: float) -> list[dict]:
        return decay_param_groups(self, weight_decay)

    @torch.no_grad()
    def postprocess(self, out: TriDetOutput, metas: list[dict]) -> list[Detections]:
        """The detections of every video, in seconds, sorted by score and capped at
        ``max_seg_num``; each candidate's segment from its own class's Trident offsets."""
        if len(metas) != out.cls_logits[0].shape[0]:
            raise ValueError(f"{len(metas)} metas for a batch of {out.cls_logits[0].shape[0]}")
        if self.trident:
            out = self._trident_output(out)
        results = []
        for index, meta in enumerate(metas):
            if self.trident:
                offsets = [video_class_offsets(c[index], s[index], e[index], self.num_bins)
                           for c, s, e in zip(out.center_offsets, out.start_logits, out.end_logits)]
            else:
                offsets = [x[index] for x in out.offsets]
            results.append(postprocess_video([x[index] for x in out.cls_logits], offsets,
                                             [x[index] for x in out.masks], out.points, meta, self.nms))
        return results

    def _trident_output(self, out: DetectorOutput) -> TriDetOutput:
        if not isinstance(out, TriDetOutput) or out.num_bins != self.num_bins:
            raise TypeError("the Trident head decodes from its own branches: pass the TriDetOutput of this "
                            f"model ({self.num_bins} bins), got {type(out).__name__}")
        return out


class TriDetPyramidHead(TriDet):
    """TriDet's neck, heads, loss and post-processing on an encoder pyramid computed
    elsewhere: ``forward(pyramid, pyramid_masks)`` is ``predict``. Drawn as a whole detector
    whose projection and encoder are then dropped, as ActionFormer's `PyramidHead`."""

    def __init__(self, spec: TriDetSpec):
        super().__init__(spec)
        del self.embed, self.encoder

    def forward(self, pyramid: list[torch.Tensor], pyramid_masks: list[torch.Tensor]) -> TriDetOutput:
        return self.predict(pyramid, pyramid_masks)


#: TriDetSpec fields read from the shared ``model`` section and from TriDet's own ``tridet``
_MODEL_KEYS = ("backbone", "arch", "scale_factor", "embd_dim", "embd_kernel_size", "embd_with_ln", "use_abs_pe",
               "fpn_type", "fpn_dim", "fpn_with_ln", "head_dim", "head_num_layers", "head_kernel_size",
               "head_with_ln", "regression_range")
_TRIDET_KEYS = ("sgp_mlp_dim", "sgp_win_size", "sgp_k", "init_conv_vars", "downsample_type", "input_noise",
                "boundary_kernel_size", "use_trident_head", "num_bins", "iou_weight_power")


def spec_from_config(cfg, num_classes: int, input_dim: int | None = None) -> TriDetSpec:
    """`TriDetSpec` from a config: the anatomy from ``model``, TriDet's own keys from
    ``tridet``; data, training targets / losses and NMS from ``data``, ``train`` and ``test``
    as for ActionFormer. Config errors are `RgbtadError`."""
    if num_classes <= 0:
        raise RgbtadError(f"the detector needs at least one class, got {num_classes}")
    own = {key: getattr(cfg.model, key) for key in _MODEL_KEYS}
    own.update({key: getattr(cfg.tridet, key) for key in _TRIDET_KEYS})
    own["arch"] = tuple(own["arch"])
    own["regression_range"] = tuple(tuple(r) for r in own["regression_range"])
    if not isinstance(own["sgp_win_size"], int):
        own["sgp_win_size"] = tuple(own["sgp_win_size"])
    d, t, s = cfg.data, cfg.train, cfg.test
    nms = NMSConfig.from_config(s, voting_iou_weight=False)
    with model_config_errors():
        return TriDetSpec(
            input_dim=d.input_dim if input_dim is None else input_dim, num_classes=num_classes,
            max_seq_len=d.max_seq_len, droppath=t.droppath, cls_prior_prob=t.cls_prior_prob,
            head_empty_cls=tuple(t.head_empty_cls), center_sample=t.center_sample,
            center_sample_radius=t.center_sample_radius, loss_weight=t.loss_weight,
            label_smoothing=t.label_smoothing, init_loss_norm=t.init_loss_norm, nms=nms, **own,
        )


@register_pyramid_head("tridet")
def build_tridet_head(cfg, num_classes: int, *, input_dim: int) -> TriDetPyramidHead:
    """`TriDetPyramidHead` from a config, for encoder pyramids of `input_dim` channels."""
    spec = spec_from_config(cfg, num_classes, input_dim)
    with model_config_errors():
        return TriDetPyramidHead(spec)


@register_model("tridet")
def build_tridet(cfg, num_classes: int, *, input_dim: int | None = None) -> TriDet:
    """`TriDet` from a config (`spec_from_config`); `input_dim` overrides ``data.input_dim``."""
    spec = spec_from_config(cfg, num_classes, input_dim)
    with model_config_errors():
        return TriDet(spec)
