"""What a config may hold beyond its types: the choices of each string key, the range of
each numeric key, and the rules that relate keys to each other (`validate`)."""

from __future__ import annotations

from typing import Any

from rgbtad.config.sections import Config
from rgbtad.core.errors import RgbtadError
from rgbtad.core.ranges import describe_range, in_range

#: the backbones of each detector family (model.name -> model.backbone)
BACKBONES = {"actionformer": ("transformer", "conv", "conv_dw"), "tridet": ("sgp", "conv"),
             "gtad": ("gcnext",), "tadtr": ("deformable",)}

_CHOICES = {
    "model.name": set(BACKBONES),
    "model.backbone": {name for names in BACKBONES.values() for name in names},
    "tridet.downsample_type": {"max", "avg"},
    "gtad.context": {"none", "last", "all"},
    "tadtr.activation": {"relu", "gelu", "leaky_relu"},
    "model.fpn_type": {"identity", "fpn"},
    "train.center_sample": {"radius", "none"},
    "train.optimizer": {"AdamW", "SGD"},
    "train.schedule": {"cosine", "multistep"},
    "test.nms_method": {"soft", "hard", "none"},
    "test.ext_score_combine": {"sqrt_product", "product"},  # rgbtad.detection.score_fusion.COMBINES
    "distill.method": {"none", "conventional", "decomposed", "c2ms"},
    "distill.fusion": {"concat", "sum", "self_attn", "cross_attn", "diff_attn", "laf"},
    "distill.fuse_at": {"projection", "encoder"},
    "distill.share": {"cls_reg", "full"},
    "distill.laf_pooling": {"global", "local"},
    "distill.kd_reg_positions": {"teacher", "gt"},
    "distill.query_kd_layers": {"all", "last"},  # rgbtad.distill.query_losses
    "distill.gcr_mode": {"channel", "temporal"},
    "distill.abs_norm": {"softmax", "max"},
    "distill.c2ms_stage": {"none", "cross_modal", "cross_structure"},
}

# The allowed values of every numeric key, in interval notation (`rgbtad.core.ranges`: "["
# and "]" include the bound, "(" and ")" exclude it); a list or tuple key applies it to each
# of its numbers, and NaN is never in range. `model.n_mha_win_size` has none (a window <= 1
# means global attention). README.md ("Config value ranges") lists this table;
# tests/test_config.py checks that it covers every numeric key and that the README agrees.
RANGES = {
    "data.input_dim": "(0, inf)",
    "data.feat_stride": "(0, inf)",
    "data.num_frames": "(0, inf)",
    "data.default_fps": "(0, inf)",
    "data.downsample_rate": "(0, inf)",
    "data.max_seq_len": "(0, inf)",
    "data.trunc_thresh": "[0, 1]",
    "data.crop_ratio": "(0, 1]",
    "data.num_workers": "[0, inf)",
    "model.num_classes": "[0, inf)",
    "model.scale_factor": "(0, inf)",
    "model.arch": "[0, inf)",
    "model.embd_kernel_size": "(0, inf)",
    "model.embd_dim": "(0, inf)",
    "model.n_head": "(0, inf)",
    "model.fpn_dim": "(0, inf)",
    "model.fpn_start_level": "[0, inf)",
    "model.head_dim": "(0, inf)",
    "model.head_num_layers": "(0, inf)",
    "model.head_kernel_size": "(0, inf)",
    "model.regression_range": "[0, inf)",
    "tridet.sgp_mlp_dim": "(0, inf)",
    "tridet.sgp_win_size": "(0, inf)",
    "tridet.sgp_k": "(0, inf)",
    "tridet.init_conv_vars": "[0, inf)",
    "tridet.input_noise": "[0, inf)",
    "tridet.boundary_kernel_size": "(0, inf)",
    "tridet.num_bins": "(0, inf)",
    "tridet.iou_weight_power": "[0, inf)",
    "gtad.max_duration": "(0, inf)",
    "gtad.hidden_dim_1d": "(0, inf)",
    "gtad.hidden_dim_2d": "(0, inf)",
    "gtad.hidden_dim_3d": "(0, inf)",
    "gtad.input_groups": "(0, inf)",
    "gtad.groups": "(0, inf)",
    "gtad.width_group": "(0, inf)",
    "gtad.knn_k": "(0, inf)",
    "gtad.align_resolution": "(0, inf)",
    "gtad.context_resolution": "(0, inf)",
    "gtad.align_sampling": "[0, inf)",
    "gtad.expand_ratio": "[0, inf)",
    "gtad.map_kernel_size": "(0, inf)",
    "gtad.reg_high_iou": "[0, 1]",
    "gtad.reg_low_iou": "[0, 1]",
    "gtad.cls_pos_iou": "[0, 1]",
    "gtad.boundary_width": "(0, inf)",
    "gtad.reg_weight": "[0, inf)",
    "gtad.cls_weight": "[0, inf)",
    "gtad.boundary_weight": "[0, inf)",
    "gtad.nms_threshold": "(0, inf)",
    "gtad.num_proposals": "(0, inf)",
    "gtad.max_proposal_frames": "(-inf, inf)",
    "gtad.tail_min": "[0, inf)",
    "gtad.eval_chunk": "(0, inf)",
    "tadtr.hidden_dim": "(0, inf)",
    "tadtr.num_heads": "(0, inf)",
    "tadtr.enc_layers": "(0, inf)",
    "tadtr.dec_layers": "(0, inf)",
    "tadtr.dim_feedforward": "(0, inf)",
    "tadtr.dropout": "[0, 1)",
    "tadtr.enc_n_points": "(0, inf)",
    "tadtr.dec_n_points": "(0, inf)",
    "tadtr.num_queries": "(0, inf)",
    "tadtr.set_cost_class": "[0, inf)",
    "tadtr.set_cost_seg": "[0, inf)",
    "tadtr.set_cost_iou": "[0, inf)",
    "tadtr.cls_loss_coef": "[0, inf)",
    "tadtr.seg_loss_coef": "[0, inf)",
    "tadtr.iou_loss_coef": "[0, inf)",
    "tadtr.act_loss_coef": "[0, inf)",
    "tadtr.focal_alpha": "[0, 1]",
    "tadtr.topk": "(0, inf)",
    "tadtr.test_overlap": "[0, 1)",
    "tadtr.fusion_nms_threshold": "[0, 1]",
    "tadtr.lr_linear_proj_mult": "[0, inf)",
    "train.center_sample_radius": "(0, inf)",
    "train.loss_weight": "(-inf, inf)",
    "train.cls_prior_prob": "(0, 1)",
    "train.init_loss_norm": "(0, inf)",
    "train.label_smoothing": "[0, 1)",
    "train.head_empty_cls": "[0, inf)",
    "train.dropout": "[0, 1)",
    "train.droppath": "[0, 1)",
    "train.clip_grad_l2norm": "(-inf, inf)",
    "train.learning_rate": "(0, inf)",
    "train.momentum": "[0, 1)",
    "train.weight_decay": "[0, inf)",
    "train.batch_size": "(0, inf)",
    "train.epochs": "[0, inf)",  # with warmup_epochs: at least one epoch in all (validate)
    "train.warmup_epochs": "[0, inf)",
    "train.schedule_steps": "[0, inf)",
    "train.schedule_gamma": "(0, 1]",
    "train.ema_decay": "[0, 1)",
    "train.seed": "[0, inf)",
    "train.eval_every": "[0, inf)",
    "train.checkpoint_every": "(0, inf)",
    "train.log_every": "(0, inf)",
    "test.pre_nms_thresh": "[0, 1]",
    "test.pre_nms_topk": "(0, inf)",
    "test.duration_thresh": "[0, inf)",
    "test.iou_threshold": "[0, 1]",
    "test.min_score": "[0, 1]",
    "test.max_seg_num": "(0, inf)",
    "test.nms_sigma": "(0, inf)",
    "test.voting_thresh": "[0, 1]",
    "test.tiou_thresholds": "(0, 1]",
    "test.ext_score_top_k": "(0, inf)",
    "test.ext_score_num_pred": "(0, inf)",
    "distill.teacher_input_dim": "(0, inf)",
    "distill.teacher_feat_dim": "[0, inf)",
    "distill.laf_window": "(0, inf)",  # and odd (validate)
    "distill.hard_weight": "[0, inf)",
    "distill.joint_weight": "[0, inf)",
    "distill.motion_weight": "[0, inf)",
    "distill.kd_cls_weight": "[0, inf)",
    "distill.kd_reg_weight": "[0, inf)",
    "distill.feat_weight": "[0, inf)",
    "distill.atom_weight": "[0, inf)",
    "distill.gcr_weight": "[0, inf)",
    "distill.abs_weight": "[0, inf)",
    "distill.temperature": "(0, inf)",
    "distill.kd_score_thresh": "[0, 1]",
    "distill.atom_tau": "(0, inf)",
    "distill.atom_dim": "(0, inf)",
    "distill.hallucinate_dim": "[0, inf)",
    "distill.input_weight": "[0, inf)",
    "distill.stem_weight": "[0, inf)",
}


def _numbers(value: Any) -> list:
    """The numbers of a config value: itself, those of a (nested) list or tuple, none for null."""
    if isinstance(value, (list, tuple)):
        return [n for item in value for n in _numbers(item)]
    return [] if value is None else [value]


def validate(cfg: Config) -> None:
    """Raise `RgbtadError`, naming the key, on a value outside its choices or range, or on keys
    that do not fit together."""
    for dotted, allowed in _CHOICES.items():
        section, name = dotted.split(".")
        value = getattr(getattr(cfg, section), name)
        if value not in allowed:
            raise RgbtadError(
                f"config key '{dotted}': {value!r} is not one of {sorted(allowed)}"
            )
    for dotted, interval in RANGES.items():
        section, name = dotted.split(".")
        for number in _numbers(getattr(getattr(cfg, section), name)):
            if not in_range(number, interval):
                raise RgbtadError(f"config key '{dotted}' must be {describe_range(interval)}, got {number}")
    _check_family(cfg)
    if cfg.distill.c2ms_stage != "none" and cfg.distill.method != "c2ms":
        raise RgbtadError(f"config key 'distill.c2ms_stage' ({cfg.distill.c2ms_stage!r}) needs "
                          f"distill.method 'c2ms', got {cfg.distill.method!r}")
    if cfg.distill.laf_window % 2 == 0:
        raise RgbtadError(f"config key 'distill.laf_window' must be a positive odd number, "
                          f"got {cfg.distill.laf_window}")
    if cfg.data.crop_ratio is not None and cfg.data.crop_ratio[0] > cfg.data.crop_ratio[1]:
        raise RgbtadError(f"config key 'data.crop_ratio' must satisfy low <= high, got {list(cfg.data.crop_ratio)}")
    if cfg.train.epochs + cfg.train.warmup_epochs <= 0:
        raise RgbtadError("config keys 'train.epochs' + 'train.warmup_epochs' must be positive")
    levels = cfg.model.arch[2] + 1 - cfg.model.fpn_start_level
    if len(cfg.model.regression_range) != levels:
        raise RgbtadError(
            f"config key 'model.regression_range' needs {levels} ranges for arch "
            f"{list(cfg.model.arch)}, got {len(cfg.model.regression_range)}"
        )
    if isinstance(cfg.model.n_mha_win_size, list) and len(cfg.model.n_mha_win_size) != cfg.model.arch[2] + 1:
        raise RgbtadError(
            f"config key 'model.n_mha_win_size' needs {cfg.model.arch[2] + 1} values, "
            f"got {len(cfg.model.n_mha_win_size)}"
        )


def _check_family(cfg: Config) -> None:
    """The keys that depend on the detector family (model.name)."""
    family = cfg.model.name
    if cfg.model.backbone not in BACKBONES[family]:
        raise RgbtadError(f"config key 'model.backbone': {cfg.model.backbone!r} is not a backbone of "
                          f"model.name {family!r} (one of {list(BACKBONES[family])})")
    if family == "tridet":
        if cfg.model.fpn_start_level != 0:
            raise RgbtadError("config key 'model.fpn_start_level' must be 0 for model.name 'tridet'")
        windows = cfg.tridet.sgp_win_size
        if isinstance(windows, list) and len(windows) != cfg.model.arch[2] + 1:
            raise RgbtadError(f"config key 'tridet.sgp_win_size' needs {cfg.model.arch[2] + 1} values, "
                              f"got {len(windows)}")
    if family == "tadtr":
        if cfg.distill.method == "c2ms":  # its terms compare per-position outputs; TadTR's are queries
            raise RgbtadError("config key 'distill.method' 'c2ms' needs a detector with per-position outputs, "
                              "not model.name 'tadtr' (use 'conventional' or 'decomposed')")
        if cfg.tadtr.hidden_dim % 32 != 0 or cfg.tadtr.hidden_dim % cfg.tadtr.num_heads != 0:
            raise RgbtadError(f"config key 'tadtr.hidden_dim' ({cfg.tadtr.hidden_dim}) must be a multiple of 32 "
                              f"and of tadtr.num_heads ({cfg.tadtr.num_heads})")
    if family == "gtad":
        if cfg.distill.method == "c2ms":  # its terms compare per-position outputs; G-TAD's is a proposal map
            raise RgbtadError("config key 'distill.method' 'c2ms' needs a detector with per-position outputs, "
                              "not model.name 'gtad' (use 'conventional' or 'decomposed')")
        if not 0 < cfg.gtad.max_duration < cfg.data.max_seq_len:
            raise RgbtadError(f"config key 'gtad.max_duration' {cfg.gtad.max_duration} must be below "
                              f"data.max_seq_len {cfg.data.max_seq_len} (G-TAD's window)")
        if cfg.gtad.reg_low_iou > cfg.gtad.reg_high_iou:
            raise RgbtadError("config key 'gtad.reg_low_iou' must not exceed 'gtad.reg_high_iou'")
