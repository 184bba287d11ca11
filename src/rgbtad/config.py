"""One typed, validated configuration schema.

A config is a tree of dataclasses. YAML files and dotted `--set key=value` overrides are
merged into it; an unknown key, a wrong type or an invalid value is an `RgbtadError` that
names the dotted key. Defaults are the THUMOS14 settings of the official ActionFormer
release (happyharrycn/actionformer_release, `configs/thumos_i3d.yaml` merged over
`libs/core/config.py`), so a config file only lists what differs.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rgbtad.core.errors import RgbtadError
from rgbtad.core.ranges import describe_range, in_range
from rgbtad.core.yamlio import load_yaml, read_yaml_mapping


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
    """ActionFormer anatomy: projection (embedding) -> backbone -> neck -> heads."""

    # "transformer" (ActionFormer), "conv" (ResNet-style) or "conv_dw" (conv with every
    # projection/encoder conv depthwise-separable, C2MS's compressed student; heads stay standard)
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
    max_buffer_len_factor: float = 6.0
    use_abs_pe: bool = False
    use_rel_pe: bool = False
    regression_range: list[tuple[float, float]] = field(
        default_factory=lambda: [(0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 10000)]
    )


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
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))


_CHOICES = {
    "model.backbone": {"transformer", "conv", "conv_dw"},
    "model.fpn_type": {"identity", "fpn"},
    "train.center_sample": {"radius", "none"},
    "train.optimizer": {"AdamW", "SGD"},
    "train.schedule": {"cosine", "multistep"},
    "test.nms_method": {"soft", "hard", "none"},
    "distill.method": {"none", "conventional", "decomposed", "c2ms"},
    "distill.fusion": {"concat", "sum", "self_attn", "cross_attn", "diff_attn", "laf"},
    "distill.fuse_at": {"projection", "encoder"},
    "distill.share": {"cls_reg", "full"},
    "distill.laf_pooling": {"global", "local"},
    "distill.kd_reg_positions": {"teacher", "gt"},
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
    "model.max_buffer_len_factor": "(0, inf)",
    "model.regression_range": "[0, inf)",
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
    "train.epochs": "[0, inf)",  # with warmup_epochs: at least one epoch in all (_validate)
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
    "distill.teacher_input_dim": "(0, inf)",
    "distill.teacher_feat_dim": "[0, inf)",
    "distill.laf_window": "(0, inf)",  # and odd (_validate)
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


# Named presets: a config mapping or --set override that chooses a value of the key also
# sets the listed keys of its section, except those it gives itself; later overrides win as
# usual (so `--set distill.c2ms_stage=cross_modal` over any config file applies the preset,
# and a saved run config, which lists every key, reads back unchanged).
# C2MS-Net's effective weights (METHODS.md §3.4): "cross_modal" is their step 1 (teacher ->
# the same architecture + Rgb2Flow, initialised from the teacher), "cross_structure" their
# step 2 (transformer -> conv, or conv -> depthwise-separable conv; student from scratch).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "distill.c2ms_stage": {
        "cross_modal": {"hard_weight": 0.4, "input_weight": 3.0, "stem_weight": 0.0, "kd_reg_weight": 0.6,
                        "kd_cls_weight": 0.24, "temperature": 2.0, "init_from_teacher": True},
        "cross_structure": {"hard_weight": 0.4, "input_weight": 0.0, "stem_weight": 0.6, "kd_reg_weight": 0.6,
                            "kd_cls_weight": 0.024, "temperature": 2.0, "init_from_teacher": False},
    },
}


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    return obj


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check `value` against a type annotation, converting where it is lossless."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        for option in args:
            try:
                return _coerce(value, option, key)
            except RgbtadError:
                continue
        raise RgbtadError(f"config key '{key}': {value!r} is not a valid {_type_name(annotation)}")
    if annotation is type(None):
        if value is None:
            return None
        raise RgbtadError(f"config key '{key}': expected null, got {value!r}")
    if annotation is Any:
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            # PyYAML reads exponents without a dot (1e-4) as strings (YAML 1.1)
            try:
                return float(value)
            except ValueError:
                pass
    elif annotation is str:
        if isinstance(value, str):
            return value
    elif annotation is dict or origin is dict:
        if isinstance(value, dict):
            return dict(value)
    elif origin in (list, tuple):
        if isinstance(value, (list, tuple)):
            if origin is tuple and args and args[-1] is not Ellipsis:
                if len(value) != len(args):
                    raise RgbtadError(
                        f"config key '{key}': expected {len(args)} values, got {len(value)}"
                    )
                return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
            item_type = args[0] if args else Any
            converted = [_coerce(v, item_type, f"{key}[{i}]") for i, v in enumerate(value)]
            return tuple(converted) if origin is tuple else converted
    raise RgbtadError(f"config key '{key}': expected {_type_name(annotation)}, got {value!r}")


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _known_keys(section: Any, values: dict, prefix: str):
    """(key, value, dotted key) of `values`, each a field of the dataclass `section`."""
    if not isinstance(values, dict):
        raise RgbtadError(f"config section '{prefix}' must be a mapping, got {values!r}")
    names = [f.name for f in dataclasses.fields(section)]
    for key, value in values.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{prefix + '.' if prefix else ''}{close[0]}'?)" if close else ""
            raise RgbtadError(f"unknown config key '{dotted}'{hint}")
        yield key, value, dotted


def _merge_section(section: Any, values: dict, prefix: str) -> None:
    hints = typing.get_type_hints(type(section))
    for key, value, dotted in _known_keys(section, values, prefix):
        current = getattr(section, key)
        if dataclasses.is_dataclass(current) and current.__dataclass_params__.frozen:
            setattr(section, key, _replaced(current, value, dotted))
        elif dataclasses.is_dataclass(current):
            _merge_section(current, value, dotted)
        else:
            setattr(section, key, _coerce(value, hints[key], dotted))


def _replaced(frozen: Any, values: dict, prefix: str) -> Any:
    """A frozen dataclass section (a value type, e.g. `SnippetSpec`): a copy with `values`
    merged in, validated by the type itself."""
    hints = typing.get_type_hints(type(frozen))
    changes = {key: _coerce(value, hints[key], dotted) for key, value, dotted in _known_keys(frozen, values, prefix)}
    try:
        return dataclasses.replace(frozen, **changes)
    except RgbtadError as err:
        raise RgbtadError(f"config section '{prefix}': {err}") from None


def merge_values(target: Any, values: dict | None = None, overrides: list[str] | None = None) -> None:
    """Merge a mapping, then dotted `key=value` overrides, into the dataclass tree `target`
    with this module's checks (unknown keys with a did-you-mean, types); for configs other
    than `Config` (e.g. `rgbtad.training.backbone_config`), which validate their values
    themselves."""
    _merge_section(target, values or {}, "")
    for text in overrides or []:
        key, value = parse_override(text)
        _merge_section(target, _nest(key, value), "")


def _validate(cfg: Config) -> None:
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


def parse_override(text: str) -> tuple[str, Any]:
    """Parse one `key=value` override; the value is read as YAML (so 1e-4, [1,2], true work)."""
    if "=" not in text:
        raise RgbtadError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    try:
        value = load_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise RgbtadError(f"override {text!r}: value is not valid YAML ({err})") from None
    return key.strip(), value


def _nest(key: str, value: Any) -> dict:
    out: dict = {}
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return out


def _dotted_keys(values: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in values.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        keys.add(dotted)
        if isinstance(value, dict):
            keys |= _dotted_keys(value, dotted)
    return keys


def _merge_with_presets(cfg: Config, values: dict) -> None:
    """Merge one source (a mapping or an override); where it chooses a preset (`PRESETS`),
    the preset fills in the keys that the source does not give."""
    _merge_section(cfg, values, "")
    given = _dotted_keys(values)
    for dotted, presets in PRESETS.items():
        if dotted not in given:
            continue
        section_name, name = dotted.split(".")
        section = getattr(cfg, section_name)
        for key, value in presets.get(getattr(section, name), {}).items():
            if f"{section_name}.{key}" not in given:
                setattr(section, key, value)


def build_config(values: dict | None = None, overrides: list[str] | None = None) -> Config:
    """Build a validated Config from a mapping plus dotted `key=value` overrides, applied in
    order (presets: see `PRESETS`)."""
    cfg = Config()
    _merge_with_presets(cfg, values or {})
    for text in overrides or []:
        key, value = parse_override(text)
        _merge_with_presets(cfg, _nest(key, value))
    _validate(cfg)
    return cfg


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config file (or only the defaults when `path` is None)."""
    values: dict = {}
    if path is not None:
        path = Path(path)
        values = read_yaml_mapping(path, "config file", "a config must be a mapping of sections", empty_ok=True)
        try:
            return build_config(values, overrides)
        except RgbtadError as err:
            raise RgbtadError(f"{path}: {err}") from None
    return build_config(values, overrides)


def save_config(cfg: Config, path: str | Path) -> None:
    from rgbtad.core.atomic import write_text

    write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
