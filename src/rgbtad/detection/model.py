"""The ActionFormer detector, assembled: projection -> encoder -> neck -> heads.

Release counterpart: ``PtTransformer`` (``libs/modeling/meta_archs.py``), split here by
anatomy. The forward pass only predicts; ``losses`` and ``postprocess`` are separate calls::

    out = model(feats, masks)                      # B x C x L features, B x L bool masks
    losses = model.losses(out, gt_segments, gt_labels)
    detections = model.postprocess(out, metas)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from rgbtad.detection.encoders import ConvEmbedding, ConvEncoder, TransformerEncoder, zero_conv_biases
from rgbtad.detection.blocks import ChannelLayerNorm, ConvAttention, LayerScaleDropPath, Scale
from rgbtad.detection.heads import ClsHead, RegHead
from rgbtad.detection.losses import DetectionLoss
from rgbtad.detection.necks import FPNNeck, IdentityNeck
from rgbtad.detection.points import level_points, pyramid_strides
from rgbtad.detection.postprocess import NMSConfig, postprocess_video
from rgbtad.core.errors import RgbtadError

__all__ = ["ActionFormer", "DetectorOutput", "decay_param_groups", "max_div_factor"]


@dataclass
class DetectorOutput:
    """Per-level predictions (lists over pyramid levels, finest first).

    cls_logits: ``B x T_l x K``; offsets: ``B x T_l x 2`` (start / end distances in units of
    the level stride, >= 0); masks: ``B x T_l`` bool; points: ``T_l x 4`` rows
    ``(t, lo, hi, stride)`` on the input grid; feats: the neck features ``B x C x T_l``
    (for distillation); encoder_feats: the encoder's pyramid before the neck.
    """

    cls_logits: list[torch.Tensor]
    offsets: list[torch.Tensor]
    masks: list[torch.Tensor]
    points: list[torch.Tensor]
    feats: list[torch.Tensor] = field(default_factory=list)
    encoder_feats: list[torch.Tensor] = field(default_factory=list)


def max_div_factor(strides: list[int], windows: list[int]) -> int:
    """What inference inputs are padded to a multiple of: ``max_l s_l * (w_l // 2) * 2``
    (``s_l`` for global attention). Like the release, strides and windows are paired from
    the first entry of each list (this only matters with a neck start level > 0)."""
    factor = 1
    for stride, window in zip(strides, windows):
        factor = max(factor, stride * (window // 2) * 2 if window > 1 else stride)
    return factor


class ActionFormer(nn.Module):
    loss_names = ("cls_loss", "reg_loss", "final_loss")

    def __init__(self, *, input_dim: int, num_classes: int, max_seq_len: int = 2304,
                 backbone: str = "transformer", arch: tuple[int, int, int] = (2, 2, 5),
                 scale_factor: int = 2, embd_dim: int = 512, embd_kernel_size: int = 3,
                 embd_with_ln: bool = True, n_head: int = 4, window: int | list[int] = 19,
                 use_abs_pe: bool = False, use_rel_pe: bool = False, dropout: float = 0.0,
                 droppath: float = 0.1, fpn_type: str = "identity", fpn_dim: int = 512,
                 fpn_with_ln: bool = True, fpn_start_level: int = 0, head_dim: int = 512,
                 head_num_layers: int = 3, head_kernel_size: int = 3, head_with_ln: bool = True,
                 regression_range=((0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 10000)),
                 cls_prior_prob: float = 0.01, head_empty_cls=(), center_sample: str = "radius",
                 center_sample_radius: float = 1.5, loss_weight: float = 1.0,
                 label_smoothing: float = 0.0, init_loss_norm: float = 100.0,
                 nms: NMSConfig | None = None):
        super().__init__()
        num_pyramid = arch[2] + 1
        self.num_classes = num_classes
        self.max_seq_len = max_seq_len
        self.scale_factor = scale_factor
        self.strides = pyramid_strides(scale_factor, num_pyramid, fpn_start_level)
        self.regression_range = [tuple(float(v) for v in r) for r in regression_range]
        if len(self.regression_range) != len(self.strides):
            raise ValueError(f"{len(self.strides)} pyramid levels but "
                             f"{len(self.regression_range)} regression ranges")
        windows = [window] * num_pyramid if isinstance(window, int) else list(window)
        if len(windows) != num_pyramid:
            raise ValueError(f"{num_pyramid} pyramid levels but {len(windows)} window sizes")
        self.windows = windows
        self.max_div_factor = max_div_factor(self.strides, windows)
        for stride, win in zip(self.strides, windows):
            step = stride * (win // 2) * 2 if win > 1 else stride
            if max_seq_len % step != 0:
                raise ValueError(f"max_seq_len {max_seq_len} must be divisible by {step} "
                                 f"(level stride {stride} x window {win})")
        self.nms = nms or NMSConfig()

        # Creation order follows the release (backbone, neck, heads) for seeded inits.
        self.embed = ConvEmbedding(input_dim, embd_dim, arch[0], embd_kernel_size, embd_with_ln,
                                   max_len=max_seq_len,
                                   abs_pe=use_abs_pe and backbone == "transformer",
                                   separable=backbone == "conv_dw")
        if backbone == "transformer":
            self.encoder = TransformerEncoder(embd_dim, n_head, arch[1], arch[2], windows,
                                              scale_factor, dropout, droppath, use_rel_pe)
        elif backbone in ("conv", "conv_dw"):  # conv_dw: depthwise-separable (C2MS), heads standard
            self.encoder = ConvEncoder(embd_dim, arch[1], arch[2], scale_factor,
                                       separable=backbone == "conv_dw")
        else:
            raise ValueError(f"unknown backbone {backbone!r}")
        zero_conv_biases(self.embed)
        zero_conv_biases(self.encoder)
        in_dims = [embd_dim] * num_pyramid
        if fpn_type == "identity":
            self.neck = IdentityNeck(in_dims, fpn_dim, fpn_start_level, fpn_with_ln)
        elif fpn_type == "fpn":
            self.neck = FPNNeck(in_dims, fpn_dim, scale_factor, fpn_start_level, fpn_with_ln)
        else:
            raise ValueError(f"unknown neck {fpn_type!r}")
        self.cls_head = ClsHead(fpn_dim, head_dim, num_classes, head_num_layers, head_kernel_size,
                                head_with_ln, cls_prior_prob, list(head_empty_cls))
        self.reg_head = RegHead(fpn_dim, head_dim, len(self.strides), head_num_layers,
                                head_kernel_size, head_with_ln)
        self.criterion = DetectionLoss(num_classes, init_loss_norm, 0.9, loss_weight,
                                       label_smoothing, center_sample, center_sample_radius)

    # ------------------------------------------------------------------ forward
    def extract(self, feats: torch.Tensor, masks: torch.Tensor):
        """Projection + encoder: the pyramid ``(feats, masks)`` before the neck
        (masks ``B x 1 x T_l``)."""
        if feats.dim() != 3 or masks.dim() != 2 or feats.shape[0] != masks.shape[0] \
                or feats.shape[-1] != masks.shape[-1]:
            raise ValueError(f"expected B x C x L features and B x L masks, got "
                             f"{tuple(feats.shape)} and {tuple(masks.shape)}")
        mask = masks.bool().unsqueeze(1)
        x, mask = self.embed(feats, mask)
        return self.encoder(x, mask)

    def predict(self, pyramid: list[torch.Tensor], pyramid_masks: list[torch.Tensor]) -> DetectorOutput:
        """Neck + heads on an encoder pyramid (masks ``B x 1 x T_l``)."""
        fpn_feats, fpn_masks = self.neck(pyramid, pyramid_masks)
        return self.detect(fpn_feats, fpn_masks, pyramid)

    def detect(self, fpn_feats: list[torch.Tensor], fpn_masks: list[torch.Tensor],
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

    def check_length(self, length: int) -> None:
        """Raise ValueError unless every pyramid level and attention window divides `length`."""
        for level, win in enumerate(self.windows):
            step = self.scale_factor ** level * ((win // 2) * 2 if win > 1 else 1)
            if length % step != 0:
                raise ValueError(
                    f"input length {length} is not divisible by {step} (pyramid level {level}, "
                    f"window {win}); pad to max_seq_len or a multiple of max_div_factor "
                    f"({self.max_div_factor})")

    def forward(self, feats: torch.Tensor, masks: torch.Tensor) -> DetectorOutput:
        self.check_length(feats.shape[-1])
        pyramid, pyramid_masks = self.extract(feats, masks)
        return self.predict(pyramid, pyramid_masks)

    # ------------------------------------------------------------------ training
    def losses(self, out: DetectorOutput, gt_segments: list[torch.Tensor],
               gt_labels: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """``cls_loss``, ``reg_loss`` and ``final_loss``; the loss normaliser's EMA moves
        only in training mode."""
        return self.criterion(out.cls_logits, out.offsets, out.masks, out.points,
                              gt_segments, gt_labels, update_normalizer=self.training)

    def param_groups(self, weight_decay: float) -> list[dict]:
        return decay_param_groups(self, weight_decay)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def postprocess(self, out: DetectorOutput, metas: list[dict]) -> list[dict]:
        """Detections per video, in seconds: ``{video_id, segments (N x 2), scores (N),
        labels (N)}`` as NumPy arrays, sorted by score and capped at ``max_seg_num``."""
        if len(metas) != out.cls_logits[0].shape[0]:
            raise ValueError(f"{len(metas)} metas for a batch of {out.cls_logits[0].shape[0]}")
        results = []
        for index, meta in enumerate(metas):
            results.append(postprocess_video(
                [x[index] for x in out.cls_logits], [x[index] for x in out.offsets],
                [x[index] for x in out.masks], out.points, meta, self.nms,
            ))
        return results


def decay_param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two optimizer groups as the release's ``make_optimizer``: weight decay on the
    weights of convolutions and linear layers; none on biases, LayerNorms, per-level
    scales, layer scales and relative position biases."""
    decay, no_decay = {}, {}
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            full = f"{module_name}.{name}" if module_name else name
            if name == "bias":
                no_decay[full] = param
            elif name == "weight" and isinstance(module, (nn.Conv1d, nn.Linear)):
                decay[full] = param
            elif isinstance(module, (ChannelLayerNorm, Scale, LayerScaleDropPath)):
                no_decay[full] = param
            elif isinstance(module, ConvAttention) and name == "rel_pos":
                no_decay[full] = param
    named = dict(model.named_parameters())
    missing = set(named) - set(decay) - set(no_decay)
    if missing:
        raise RuntimeError(f"parameters without a weight-decay rule: {sorted(missing)}")
    return [
        {"params": [decay[k] for k in sorted(decay)], "weight_decay": weight_decay},
        {"params": [no_decay[k] for k in sorted(no_decay)], "weight_decay": 0.0},
    ]


def seq_len_holding(cfg, num_snippets: int) -> int:
    """The shortest ``data.max_seq_len`` for `cfg`'s detector that holds `num_snippets`
    whole: the count rounded up to a multiple of the detector's ``max_div_factor``."""
    import math

    with torch.random.fork_rng(devices=[]):  # building the detector must not move the caller's RNG
        step = int(build_detector_from_config(cfg, 1).max_div_factor)
    return step * max(1, math.ceil(int(num_snippets) / step))


def build_detector_from_config(cfg, num_classes: int, input_dim: int | None = None) -> ActionFormer:
    """``ActionFormer`` from an ``rgbtad.config.Config``; `input_dim` overrides
    ``data.input_dim`` (detectors inside a distillation student)."""
    m, t, d, s = cfg.model, cfg.train, cfg.data, cfg.test
    if num_classes <= 0:
        raise RgbtadError(f"the detector needs at least one class, got {num_classes}")
    nms = NMSConfig(
        pre_nms_thresh=s.pre_nms_thresh, pre_nms_topk=s.pre_nms_topk,
        duration_thresh=s.duration_thresh, nms_method=s.nms_method,
        iou_threshold=s.iou_threshold, min_score=s.min_score, max_seg_num=s.max_seg_num,
        multiclass=s.multiclass_nms, sigma=s.nms_sigma, voting_thresh=s.voting_thresh,
    )
    try:
        return ActionFormer(
            input_dim=d.input_dim if input_dim is None else input_dim,
            num_classes=num_classes, max_seq_len=d.max_seq_len,
            backbone=m.backbone, arch=tuple(m.arch), scale_factor=m.scale_factor,
            embd_dim=m.embd_dim, embd_kernel_size=m.embd_kernel_size,
            embd_with_ln=m.embd_with_ln, n_head=m.n_head, window=m.n_mha_win_size,
            use_abs_pe=m.use_abs_pe, use_rel_pe=m.use_rel_pe, dropout=t.dropout,
            droppath=t.droppath, fpn_type=m.fpn_type, fpn_dim=m.fpn_dim,
            fpn_with_ln=m.fpn_with_ln, fpn_start_level=m.fpn_start_level,
            head_dim=m.head_dim, head_num_layers=m.head_num_layers,
            head_kernel_size=m.head_kernel_size, head_with_ln=m.head_with_ln,
            regression_range=m.regression_range, cls_prior_prob=t.cls_prior_prob,
            head_empty_cls=t.head_empty_cls, center_sample=t.center_sample,
            center_sample_radius=t.center_sample_radius, loss_weight=t.loss_weight,
            label_smoothing=t.label_smoothing, init_loss_norm=t.init_loss_norm, nms=nms,
        )
    except ValueError as err:
        raise RgbtadError(f"model config: {err}") from None
