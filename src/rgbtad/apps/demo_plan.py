"""What the demo trains: its settings, its snippet backbones and its detectors (teachers
before students), and which backbones a choice of detectors needs."""

from __future__ import annotations

from dataclasses import dataclass, field

from rgbtad.video.snippets import SnippetSpec

BACKBONE = "tsm_tiny"


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the benchmark and of every training; `quick` shrinks them to about 3 minutes."""

    num_train: int = 60
    num_test: int = 30
    size: int = 64
    fps: float = 10.0
    min_duration: float = 20.0
    max_duration: float = 40.0
    # 4-frame snippets tile the video (one every `stride` frames): half the backbones' and the
    # extraction's work of 8-frame ones, and on the seed-0 benchmark no loss (README, *Time*)
    snippet_frames: int = 4
    stride: int = 4  # frames between snippets (0.4 s): the feature grid of extraction and detectors
    val_stride: int = 8  # spacing of the backbones' validation snippets (a report only)
    flow_method: str = "dis"
    clip_epochs: int = 6  # motion backbones
    rgb_clip_epochs: int = 12  # the plain RGB backbone: appearance learns slower
    kd_clip_epochs: int = 6  # distilled RGB backbones, fine-tuned from the plain one
    clip_per_class: int = 64
    clip_batch_size: int = 32
    detector_dim: int = 128
    detector_epochs: int = 16
    detector_warmup: int = 2
    detector_ema_decay: float = 0.99  # a short training needs a short average (quick: 0.9)
    classes: tuple[str, ...] | None = None  # action classes of the benchmark (None: all twelve)
    # detectors to train (None: all of `demo_models`); concat fusion is the ablation's (`rgbtad ablate`)
    models: tuple[str, ...] | None = ("rgb_only", "motion_only", "two_stream", "conventional_kd", "decomposed_laf")

    def snippets(self, modality: str) -> SnippetSpec:
        """The snippets of every backbone stage for `modality` (training, extraction)."""
        return SnippetSpec(modality=modality, frames=self.snippet_frames, stride=self.stride, fps=self.fps,
                           size=self.size, flow_method=self.flow_method)

    @classmethod
    def quick(cls) -> "DemoSettings":
        """Two motion pairs (one told apart by direction, one by speed) and two appearance
        classes, 16 + 8 short videos, short trainings (small batches: more updates), and the
        detectors that make the point: rgb_only, its teacher, two_stream and the decomposed
        student with local attentive fusion."""
        return cls(num_train=16, num_test=8, min_duration=16.0, max_duration=20.0, clip_epochs=6,
                   rgb_clip_epochs=6, kd_clip_epochs=6, clip_per_class=32, clip_batch_size=16, detector_dim=64,
                   detector_epochs=20, detector_warmup=2, detector_ema_decay=0.9,
                   classes=("belt_left", "belt_right", "lift_fast", "lift_slow", "ball_bounce", "ring_pulse"),
                   models=("rgb_only", "motion_only", "two_stream", "decomposed_laf"))


@dataclass(frozen=True)
class BackboneSpec:
    """One snippet backbone of the demo; its features go to ``features/<name>``."""

    name: str
    modality: str
    teacher: str | None = None  # name of the frozen backbone it is distilled from
    distill: str = "decomposed"
    init_from: str | None = None  # name of the backbone it starts from


def _distilled(name: str, teacher: str, distill: str) -> BackboneSpec:
    return BackboneSpec(name, "rgb", teacher, distill, init_from="rgb")


def demo_backbones(with_tg: bool = False) -> list[BackboneSpec]:
    """Teachers before students. Each distilled student has its own RGB backbone: the
    backbone half of Lee et al.'s end-to-end student (`rgbtad.training.backbone_task`),
    fine-tuned from the plain RGB backbone as their student starts from the pretrained RGB
    network. `with_tg` adds the temporal-gradient teacher and its student's backbone."""
    specs = [BackboneSpec("rgb", "rgb"), BackboneSpec("flow", "flow"),
             _distilled("rgb_kd_conventional", "flow", "conventional"), _distilled("rgb_kd", "flow", "decomposed")]
    if with_tg:
        specs += [BackboneSpec("tg", "tg"), _distilled("rgb_kd_tg", "tg", "decomposed")]
    return specs


@dataclass(frozen=True)
class ModelSpec:
    """One detector of the demo: which features it reads and how it is trained."""

    name: str
    features: str  # folder name under features/
    description: str
    overrides: tuple[str, ...] = field(default=())
    teacher: str | None = None  # the model whose run it distils (trained first)


def demo_models(with_tg: bool = False) -> list[ModelSpec]:
    """The demo's detectors, in training order (teachers before their students).

    The students read RGB features only at test time, from RGB backbones distilled from the
    motion backbone (`demo_backbones`); at training time they also see the optical-flow
    features of the same snippets through the frozen `motion_only` teacher.
    """
    teacher = ("distill.teacher_run={out}/runs/motion_only", "distill.teacher_features={out}/features/flow",
               "distill.teacher_input_dim={dim[flow]}")
    models = [
        ModelSpec("rgb_only", "rgb", "ActionFormer on RGB features"),
        ModelSpec("motion_only", "flow", "ActionFormer on optical-flow features (the teacher)"),
        ModelSpec("two_stream", "two_stream", "ActionFormer on RGB + flow features"),
        ModelSpec("conventional_kd", "rgb_kd_conventional",
                  "RGB student, feature + logit mimicking of the flow teacher (backbone and detector)",
                  ("distill.method=conventional", "distill.feat_weight=1.0", *teacher), "motion_only"),
        ModelSpec("decomposed", "rgb_kd", "decomposed RGB student, concat fusion (Lee et al.)",
                  ("distill.method=decomposed", "distill.fusion=concat", *teacher), "motion_only"),
        ModelSpec("decomposed_laf", "rgb_kd", "decomposed RGB student, local attentive fusion (Lee et al.)",
                  ("distill.method=decomposed", "distill.fusion=laf", *teacher), "motion_only"),
    ]
    if with_tg:
        tg_teacher = tuple(o.replace("motion_only", "motion_tg").replace("features/flow", "features/tg")
                           .replace("dim[flow]", "dim[tg]") for o in teacher)
        models += [
            ModelSpec("motion_tg", "tg", "ActionFormer on temporal-gradient features (the TG teacher)"),
            ModelSpec("decomposed_laf_tg", "rgb_kd_tg", "decomposed RGB student, LAF, temporal-gradient teacher",
                      ("distill.method=decomposed", "distill.fusion=laf", *tg_teacher), "motion_tg"),
        ]
    return models


def chosen_models(settings: DemoSettings, with_tg: bool) -> list[ModelSpec]:
    """The detectors to train: those of `settings.models` (all when None), and those that
    `--with-tg` adds (always trained when asked for), in training order."""
    plain = {m.name for m in demo_models(False)}
    added = [m.name for m in demo_models(with_tg) if m.name not in plain]
    chosen = None if settings.models is None else {*settings.models, *added}
    return [m for m in demo_models(with_tg) if chosen is None or m.name in chosen]


def needed_backbones(backbones: list[BackboneSpec], models: list[ModelSpec]) -> list[BackboneSpec]:
    """The backbones whose features `models` read, with the teachers and starting points they
    need, in the order of `backbones` (teachers first)."""
    by_name = {b.name: b for b in backbones}
    wanted = {part for m in models for part in (("rgb", "flow") if m.features == "two_stream" else (m.features,))}
    todo = list(wanted)
    while todo:
        spec = by_name[todo.pop()]
        for other in (spec.teacher, spec.init_from):
            if other is not None and other not in wanted:
                wanted.add(other)
                todo.append(other)
    return [b for b in backbones if b.name in wanted]

