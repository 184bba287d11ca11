"""The sections of the training config, one dataclass each, and `Config`, the tree of them.

Defaults are the THUMOS14 settings of the official ActionFormer release
(happyharrycn/actionformer_release, `configs/thumos_i3d.yaml` merged over
`libs/core/config.py`), so a config file only lists what differs. The allowed values of each
key are `rgbtad.config.rules`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from rgbtad.config.typed import to_plain


@dataclass
class DataConfig:
    """Where the features and annotations are and how snippets map to time."""

    annotations: str = ""  # ActionFormer JSON, or a BSN-layout ActivityNet folder
    features: str = ""  # folder with one <prefix><video_id><ext> file per video
    train_split: str = "validation"
    val_split: str = "test"
    file_prefix: str = ""
    file_ext: str = ".npy"
    # "all", "rgb" (0:1024), "flow" (1024:2048) or an explicit "start:end" range.
    channels: str = "all"
    input_dim: int = 2048  # feature dimension after channel selection
    feat_stride: int = 4  # frames between consecutive snippets
    num_frames: int = 16  # frames per snippet
    # fps the features were extracted at; overrides the annotation's fps when set (ActivityNet)
    default_fps: float | None = None
    downsample_rate: int = 1
    max_seq_len: int = 2304
    trunc_thresh: float = 0.5
    crop_ratio: tuple[float, float] | None = (0.9, 1.0)
    # ActivityNet-style: resize every feature sequence to exactly max_seq_len steps.
    force_upsampling: bool = False
    num_workers: int = 0


@dataclass
class ModelConfig:
    """The detector: its family (``name``) and the anatomy the families share, projection
    (embedding) -> backbone -> neck -> heads; a family's own keys have their own section
    (``tridet``)."""

    name: str = "actionformer"  # the detector family: "actionformer" or "tridet" (TriDet, Shi et al.)
    # or "gtad" (G-TAD, Xu et al.; backbone "gcnext", its keys under `gtad`)
    # or "tadtr" (TadTR, Liu et al.; backbone "deformable", its keys under `tadtr`)
    # ActionFormer: "transformer", "conv" (ResNet-style) or "conv_dw" (conv with every
    # projection/encoder conv depthwise-separable, C2MS's compressed student; heads stay
    # standard). TriDet: "sgp" (its scalable-granularity perception blocks) or "conv".
    # Choosing model.name sets its family's default backbone (a preset).
    backbone: str = "transformer"
    num_classes: int = 0  # 0: the number of classes in the annotation file
    scale_factor: int = 2
    arch: tuple[int, int, int] = (2, 2, 5)  # (embedding convs, stem blocks, branch blocks)
    embd_kernel_size: int = 3
    embd_dim: int = 512
    embd_with_ln: bool = True
    n_head: int = 4
    n_mha_win_size: int | list[int] = 19  # -1 means global attention
    fpn_type: str = "identity"  # "identity" or "fpn"
    fpn_dim: int = 512
    fpn_with_ln: bool = True
    fpn_start_level: int = 0
    head_dim: int = 512
    head_num_layers: int = 3
    head_kernel_size: int = 3
    head_with_ln: bool = True
    use_abs_pe: bool = False
    use_rel_pe: bool = False
    regression_range: list[tuple[float, float]] = field(
        default_factory=lambda: [(0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 10000)]
    )


@dataclass
class TriDetConfig:
    """TriDet's own keys (model.name "tridet"; the release's THUMOS14 I3D settings,
    dingfengshi/TriDet `configs/thumos_i3d.yaml`): SGP blocks and the Trident head."""

    sgp_mlp_dim: int = 768  # hidden width of the SGP block's feed-forward part
    sgp_win_size: int | list[int] = 1  # SGP window per level (one value: every level)
    sgp_k: float = 5.0  # the long branch's kernel is k times the window (release "k")
    init_conv_vars: float = 0.0  # std of the SGP convs' initial weights (0: PyTorch's default)
    downsample_type: str = "max"  # between pyramid levels: "max" or "avg" pooling
    input_noise: float = 0.0005  # std of the Gaussian noise added to training features
    boundary_kernel_size: int = 3  # kernel of the start / end boundary heads
    use_trident_head: bool = True  # False: the release's ablation, a plain 2-offset regression head
    num_bins: int = 16  # boundary bins of the Trident head
    iou_weight_power: float = 0.2  # the class loss is weighted by IoU to this power


@dataclass
class GTADConfig:
    """G-TAD's own keys (model.name "gtad"; the release's THUMOS14 settings, frostinassiky/gtad
    `gtad_lib/opts.py` and `gtad_lib/models.py`); its window is data.max_seq_len (256)."""

    max_duration: int = 64  # anchors of 1 .. max_duration snippets (the map's rows)
    hidden_dim_1d: int = 256  # width of the graph backbone
    hidden_dim_2d: int = 128  # width of the map's 2-D convs
    hidden_dim_3d: int = 512  # output of the map's first (aligned, 1x1) conv
    input_groups: int = 4  # groups of the first conv on the input features
    groups: int = 32  # GCNeXt cardinality
    width_group: int = 4  # GCNeXt channels per group
    knn_k: int = 3  # semantic neighbours per snippet (GCNeXt and the context)
    context: str = "last"  # SGAlign context: "none", "last" (release) or "all" layers' k-NN
    align_resolution: int = 16  # points per anchor sampled from the graph features
    context_resolution: int = 16  # points per anchor sampled from the context features
    align_sampling: int = 0  # samples per point (0: ceil(region / resolution), the release)
    expand_ratio: float = 0.5  # each anchor's region widened by this share of its length a side
    map_kernel_size: int = 3  # kernel of the map's two middle convs
    multiclass: bool = False  # True: one map classification channel per class (labels != 0)
    reg_high_iou: float = 0.7  # regression loss: positives above, sampled bands below
    reg_low_iou: float = 0.3
    cls_pos_iou: float = 0.9  # classification loss: positives above
    boundary_width: float = 3.0  # snippets around a start / end that are positive
    reg_weight: float = 1.0
    cls_weight: float = 10.0
    boundary_weight: float = 1.0
    nms_threshold: float = 0.46  # soft-NMS: scores decay by exp(-IoU^2 / nms_threshold)
    num_proposals: int = 200  # proposals kept per window and per video
    max_proposal_frames: float = 300.0  # proposals this many video frames long score 0 (<= 0: off)
    boundary_filter: bool = False  # ActivityNet branch: only anchors between start / end peaks
    tail_min: int = 0  # a last window ends at the video's end if more snippets are left (release: 51)
    eval_chunk: int = 8  # windows per forward at evaluation (memory)


@dataclass
class TadTRConfig:
    """TadTR's own keys (model.name "tadtr"; the release's THUMOS14 I3D settings, xlliu7/TadTR
    `opts.py` + `configs/thumos14_i3d2s_tadtr.yml`); its window is data.max_seq_len (128)."""

    hidden_dim: int = 256  # transformer width
    num_heads: int = 8  # attention heads (release "nheads")
    enc_layers: int = 4
    dec_layers: int = 4
    dim_feedforward: int = 1024
    dropout: float = 0.1
    activation: str = "relu"  # "relu", "gelu" or "leaky_relu"
    enc_n_points: int = 4  # sampling points per head, encoder
    dec_n_points: int = 4  # sampling points per head, decoder
    num_queries: int = 40
    seg_refine: bool = True  # iterative segment refinement across decoder layers
    act_reg: bool = True  # the actionness branch (RoIAlign + MLP), multiplies the scores
    query_self_attention: bool = True  # False: the release's disable_query_self_att
    use_pos_embed: bool = True
    mask_padding: bool = False  # False: padding seen as zero features (release THUMOS windows)
    aux_loss: bool = True  # losses on every decoder layer
    set_cost_class: float = 6.0  # matcher costs
    set_cost_seg: float = 5.0
    set_cost_iou: float = 2.0
    cls_loss_coef: float = 2.0  # loss weights
    seg_loss_coef: float = 5.0
    iou_loss_coef: float = 2.0
    act_loss_coef: float = 4.0
    focal_alpha: float = 0.25
    topk: int = 100  # detections per window (release postproc_ins_topk)
    test_overlap: float = 0.25  # overlap of neighbouring test windows
    fusion_nms_threshold: float = 0.4  # NMS inside window overlaps when merging
    lr_linear_proj_mult: float = 0.1  # lr multiplier of reference_points / sampling_offsets


@dataclass
class TrainConfig:
    """Label assignment, losses and the optimisation recipe."""

    center_sample: str = "radius"  # "radius" or "none"
    center_sample_radius: float = 1.5
    loss_weight: float = 1.0  # weight of the regression loss; <= 0 means adaptive (cls/reg)
    cls_prior_prob: float = 0.01
    init_loss_norm: float = 100.0
    label_smoothing: float = 0.0
    head_empty_cls: list[int] = field(default_factory=list)
    dropout: float = 0.0
    droppath: float = 0.1
    clip_grad_l2norm: float = 1.0  # <= 0 disables clipping
    optimizer: str = "AdamW"  # "AdamW" or "SGD"
    learning_rate: float = 1e-4
    momentum: float = 0.9
    weight_decay: float = 0.05
    batch_size: int = 2
    epochs: int = 30  # epochs after warmup
    warmup_epochs: int = 5
    schedule: str = "cosine"  # "cosine" or "multistep"
    schedule_steps: list[int] = field(default_factory=list)  # multistep milestones (epochs)
    schedule_gamma: float = 0.1
    ema_decay: float = 0.999  # <= 0 disables the model EMA
    seed: int = 1234567891
    eval_every: int = 0  # validation mAP every N epochs; 0: only after the last epoch
    checkpoint_every: int = 1  # keep a resumable checkpoint every N epochs
    log_every: int = 10  # iterations between log lines


@dataclass
class TestConfig:
    """Post-processing: thresholds, NMS and the output cap."""

    pre_nms_thresh: float = 0.001
    pre_nms_topk: int = 2000
    duration_thresh: float = 0.05  # in feature-grid units
    nms_method: str = "soft"  # "soft" (Gaussian soft-NMS), "hard" or "none"
    iou_threshold: float = 0.1  # used by hard NMS only
    min_score: float = 0.001
    max_seg_num: int = 200
    multiclass_nms: bool = True  # False: class-agnostic NMS with segment voting
    nms_sigma: float = 0.5
    voting_thresh: float = 0.75
    tiou_thresholds: list[float] = field(default_factory=lambda: [0.3, 0.4, 0.5, 0.6, 0.7])
    # External video-level class scores (`rgbtad.detection.score_fusion`): each video's best
    # ext_score_num_pred detections are copied once per its ext_score_top_k best classes of this
    # file, scored by ext_score_combine: "sqrt_product" sqrt(class x detection), ActionFormer's
    # ActivityNet rule; "product" class x detection, G-TAD's THUMOS rule. None: no fusion.
    ext_score_file: str | None = None
    ext_score_top_k: int = 2
    ext_score_combine: str = "sqrt_product"
    ext_score_num_pred: int = 200


@dataclass
class DistillConfig:
    """Cross-modal distillation into an RGB-only student (`rgbtad.distill`).

    The teacher is a trained detector run; at training time each video's student features
    (``data.features`` / ``data.channels``) and teacher features (below) are loaded side by
    side, at inference only the student's.
    """

    method: str = "none"  # "none" (plain detector), "conventional", "decomposed" or "c2ms"
    teacher_run: str = ""  # run directory of the frozen teacher (trained or imported)
    teacher_features: str = ""  # folder of the teacher's features; "" = data.features
    teacher_channels: str = "all"  # as data.channels, applied to the teacher's files
    teacher_input_dim: int = 2048  # teacher feature dimension after teacher_channels
    teacher_feat_dim: int = 0  # the teacher's neck width (model.fpn_dim); 0 = the student's
    # decomposed student
    fusion: str = "laf"  # concat | sum | self_attn | cross_attn | diff_attn | laf
    # where the branches are fused: their encoder pyramids (level by level; the joint detector
    # is a neck and heads) or their projections P_A, P_M (the joint detector has its own
    # projection and encoder)
    fuse_at: str = "encoder"
    share: str = "cls_reg"  # branches share the cls/reg heads, or the whole encoder too ("full")
    detach_fusion_inputs: bool = False  # the joint loss does not train the branches (what is fused)
    laf_pooling: str = "global"  # LAF query: masked mean over the whole video, or a window
    laf_window: int = 9  # window of laf_pooling "local" (odd)
    # loss weights
    hard_weight: float = 1.0  # ground-truth detection loss (conventional; decomposed: L_app)
    joint_weight: float = 1.0  # decomposed: ground-truth loss of the joint (inference) head
    motion_weight: float = 1.0  # decomposed: lambda_m, scales every teacher term below
    kd_cls_weight: float = 1.0  # per-class sigmoid KD on the classification logits
    kd_reg_weight: float = 1.0  # L1 on the regression offsets
    feat_weight: float = 0.0  # feature mimicking (MSE on level-0 neck features)
    atom_weight: float = 0.0  # Dai et al.: atomic contrastive (InfoNCE) per snippet
    gcr_weight: float = 0.0  # Dai et al.: global contextual relations
    abs_weight: float = 0.0  # Dai et al.: action boundary saliency
    # loss options
    temperature: float = 1.0  # of the classification KD
    kd_reg_positions: str = "teacher"  # offsets distilled where the teacher is confident, or "gt"
    kd_score_thresh: float = 0.05  # "teacher": its max class probability must exceed this
    query_kd_layers: str = "all"  # TadTR students: distil every decoder layer's queries, or the "last"
    atom_tau: float = 0.1
    atom_dim: int = 256
    gcr_mode: str = "channel"  # "channel" (C x C covariance) or "temporal" (T x T affinity)
    abs_norm: str = "softmax"  # "softmax" over time + KL, or "max"-normalised + MSE
    # C2MS-Net (method "c2ms", distill/c2ms.py). Its teacher terms are kd_cls_weight (sigmoid
    # KD at `temperature`), kd_reg_weight (offset MSE at every real position, mean over levels)
    # and the two below; hard_weight scales the ground-truth loss.
    c2ms_stage: str = "none"  # preset of the weights below: "cross_modal" | "cross_structure" (PRESETS)
    hallucinate_dim: int = 0  # channels of the flow half that Rgb2Flow hallucinates; 0: no hallucinator
    input_weight: float = 3.0  # MSE of the hallucinated flow to the true flow (the teacher's extra channels)
    stem_weight: float = 0.0  # MSE of the student's level-0 encoder output to the teacher's
    init_from_teacher: bool = False  # start from the teacher's weights wherever names and shapes match


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    tridet: TriDetConfig = field(default_factory=TriDetConfig)
    gtad: GTADConfig = field(default_factory=GTADConfig)
    tadtr: TadTRConfig = field(default_factory=TadTRConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)

    def to_dict(self) -> dict[str, Any]:
        return to_plain(dataclasses.asdict(self))

