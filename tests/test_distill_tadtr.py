"""The students over TadTR: conventional KD and the decomposed student (each fusion, both
fusion points, both sharings) built from a TadTR config, trained a step with every logged
term finite, their query KD exactly 0 against themselves, the class / segment / actionness
heads literally shared by the branches, predicting from the RGB features alone, and trained
end to end by `train` with a TadTR teacher run."""

import csv
import json
import math

import numpy as np
import pytest
import torch

from rgbtad.cli import main as cli_main
from rgbtad.config import build_config
from rgbtad.core.errors import RgbtadError
from rgbtad.data.detections import Detections
from rgbtad.detection import TadTROutput, build_detector, build_model
from rgbtad.distill import FrozenTeacher, TadTRConventionalStudent, TadTRDecomposedStudent
from rgbtad.distill.query_students import cut_windows, decode_queries, encode_windows

STUDENT_DIM, TEACHER_DIM, WINDOW, CLASSES = 12, 20, 32, 3
TINY = {"hidden_dim": 32, "num_heads": 4, "enc_layers": 1, "dec_layers": 2, "dim_feedforward": 64,
        "num_queries": 8, "dropout": 0.0}
TEACHER_TERMS = ("kd_cls_loss", "kd_reg_loss", "feat_loss")
META = {"fps": 30.0, "duration": 12.0, "feat_stride": 4, "feat_num_frames": 16}


def config(input_dim: int, tadtr=None, **distill):
    return build_config({"data": {"input_dim": input_dim, "max_seq_len": WINDOW}, "model": {"name": "tadtr"},
                         "tadtr": {**TINY, **(tadtr or {})}, "distill": distill})


def student(method: str, teacher_dim: int = TEACHER_DIM, teacher_tadtr=None, **distill):
    torch.manual_seed(0)
    distill = {"feat_weight": 1.0, "kd_score_thresh": 0.0, **distill}
    model = build_model(config(STUDENT_DIM, method=method, teacher_input_dim=teacher_dim, **distill), CLASSES)
    teacher = build_detector(config(teacher_dim, teacher_tadtr), CLASSES)
    model.attach_teacher(FrozenTeacher(teacher, "teacher", teacher_dim, 0))
    return model


def batch(teacher_dim: int = TEACHER_DIM):
    generator = torch.Generator().manual_seed(1)
    masks = torch.arange(WINDOW)[None] < torch.tensor([[25], [WINDOW]])
    feats = torch.randn(2, STUDENT_DIM, WINDOW, generator=generator) * masks[:, None]
    teacher = torch.randn(2, teacher_dim, WINDOW, generator=generator) * masks[:, None]
    segments = [torch.tensor([[3.0, 10.0]]), torch.tensor([[5.0, 20.0], [22.0, 30.0]])]
    labels = [torch.tensor([0]), torch.tensor([1, 2])]
    return feats, masks, teacher, segments, labels


CASES = [("conventional", {}), ("decomposed", {}), ("decomposed", {"fuse_at": "projection"}),
         ("decomposed", {"share": "full"}), ("decomposed", {"kd_reg_positions": "gt", "query_kd_layers": "last"}),
         *[("decomposed", {"fusion": kind}) for kind in ("concat", "sum", "self_attn", "cross_attn", "diff_attn")]]


@pytest.mark.parametrize(("method", "options"), CASES)
def test_a_tadtr_student_trains_and_predicts_from_rgb_alone(method, options):
    model = student(method, **options)
    expected = TadTRConventionalStudent if method == "conventional" else TadTRDecomposedStudent
    assert type(model) is expected
    groups = model.param_groups(1e-4)  # TadTR's: every parameter once, the offset projections slower
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters())) and groups[1]["params"]
    feats, masks, teacher, segments, labels = batch()
    model.train()
    losses = model.losses(model(feats, masks, teacher_feats=teacher), segments, labels)
    assert set(model.loss_names) <= set(losses) and set(TEACHER_TERMS) <= set(model.loss_names)
    assert all(torch.isfinite(losses[name]) for name in model.loss_names)
    assert all(losses[name] > 0 for name in TEACHER_TERMS)
    losses["final_loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.teacher = None  # eval mode never needs it
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, STUDENT_DIM, 70), torch.arange(70)[None] < torch.tensor([[70], [20]]))
        detections = model.postprocess(out, [{"video_id": f"v{i}", **META} for i in range(2)])
    assert type(out) is TadTROutput and out.windows == [[(0, 32), (24, 56), (48, 70)], [(0, 20)]]
    assert all(isinstance(d, Detections) and len(d.scores) > 0 for d in detections)


def _become_the_teacher(model, teacher):
    """Give the student's teacher-facing path the teacher's weights."""
    if isinstance(model, TadTRConventionalStudent):
        model.detector.load_state_dict(teacher.state_dict())
        return
    heads = {k: v for k, v in teacher.state_dict().items() if k.startswith(("class_embed", "segment_embed",
                                                                              "actionness"))}
    model.appearance.load_state_dict(heads, strict=False)
    model.motion_proj.load_state_dict(teacher.input_proj.state_dict())
    model.motion_transformer.load_state_dict(teacher.transformer.state_dict())
    model.motion_queries.load_state_dict(teacher.query_embed.state_dict())


@pytest.mark.parametrize("method", ["conventional", "decomposed"])
@pytest.mark.parametrize("options", [{}, {"kd_reg_positions": "gt", "query_kd_layers": "last"}])
def test_the_teacher_terms_vanish_when_the_student_is_the_teacher(method, options):
    model = student(method, teacher_dim=STUDENT_DIM, **options)
    _become_the_teacher(model, model.teacher.model)
    feats, masks, _, segments, labels = batch()
    model.train()
    losses = model.losses(model(feats, masks, teacher_feats=feats), segments, labels)
    # trainable weights take another attention kernel than the frozen teacher's (last bits only)
    assert all(abs(losses[name].item()) < 1e-4 for name in TEACHER_TERMS), {n: losses[n].item() for n in TEACHER_TERMS}
    for param in model.parameters():
        param.requires_grad_(False)
    losses = model.losses(model(feats, masks, teacher_feats=feats), segments, labels)
    assert all(losses[name].item() == 0.0 for name in TEACHER_TERMS), {n: losses[n].item() for n in TEACHER_TERMS}
    other = model.teacher.model
    with torch.no_grad():
        other.class_embed[-1].bias.add_(0.5)  # a different teacher teaches again
    losses = model.losses(model(feats, masks, teacher_feats=feats), segments, labels)
    assert losses["kd_cls_loss"] > 0


def test_the_branches_share_the_heads_and_the_motion_branch_learns_only_from_the_teacher():
    model = student("decomposed", hard_weight=0.0, joint_weight=0.0)
    feats, masks, teacher, segments, labels = batch()
    model.train()
    out = model(feats, masks, teacher_feats=teacher)
    model.losses(out, segments, labels)["final_loss"].backward()
    app = model.appearance
    grads = {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    # the teacher terms train P_M, the motion encoder and decoder and the shared heads, and nothing
    # of the appearance branch's own
    assert {"motion_proj.0.weight", "appearance.class_embed.0.weight", "appearance.segment_embed.1.layers.2.weight",
            "appearance.actionness.actionness_pred.0.weight"} <= grads
    assert any(n.startswith("motion_transformer.encoder.") for n in grads)
    assert not any(n.startswith(("appearance.input_proj", "appearance.transformer", "joint.")) for n in grads)
    heads = [m for name, m in model.named_modules() if name.endswith(("class_embed", "segment_embed", "actionness"))]
    assert len(heads) == 6  # appearance's (both branches') and the joint detector's, nothing else
    with torch.no_grad():
        app.class_embed[-1].bias.add_(1.0)  # both branches read these very modules
        again = model(feats, masks, teacher_feats=teacher)
    for branch in ("appearance", "motion"):
        shift = again.branches[branch].logits[-1] - out.branches[branch].logits[-1]
        assert torch.allclose(shift, torch.ones_like(shift), atol=1e-5)
    assert torch.equal(again.logits[-1], out.logits[-1])  # the joint detector has its own heads
    full = student("decomposed", share="full")
    assert not hasattr(full, "motion_transformer") and not hasattr(full, "motion_queries")


def test_the_stages_of_the_students_are_tadtrs_own():
    torch.manual_seed(0)
    model = build_detector(config(STUDENT_DIM), CLASSES).eval()
    feats, masks = torch.randn(2, STUDENT_DIM, 70), torch.arange(70)[None] < torch.tensor([[70], [20]])
    with torch.no_grad():
        whole = model(feats, masks)
        x, valid, windows = cut_windows(feats, masks, model.spec, training=False)
        padding = torch.zeros_like(valid)
        ratio = torch.ones(len(x))
        memory = encode_windows(model.transformer, model.spec, model.input_proj(x), padding, ratio)
        split = decode_queries(model, model.transformer, model.query_embed, memory, padding, ratio)
    assert windows == whole.windows
    for ours, theirs in zip([*split.logits, *split.segments, split.actionness, split.memory],
                            [*whole.logits, *whole.segments, whole.actionness, whole.memory]):
        assert torch.equal(ours, theirs)


def test_what_cannot_teach_a_tadtr_student_is_refused_by_name():
    model = build_model(config(STUDENT_DIM, method="decomposed", teacher_input_dim=TEACHER_DIM), CLASSES)
    pyramid = build_config({"data": {"input_dim": TEACHER_DIM, "max_seq_len": 64}, "model": {
        "embd_dim": 16, "fpn_dim": 16, "head_dim": 16, "n_head": 2, "n_mha_win_size": 5, "arch": [2, 1, 3],
        "regression_range": [[0, 4], [4, 8], [8, 16], [16, 10000]]}})
    with pytest.raises(RgbtadError, match="TadTR teacher.s queries, but the teacher is ActionFormer"):
        model.attach_teacher(FrozenTeacher(build_detector(pyramid, CLASSES), "t", TEACHER_DIM, 16))
    deeper = build_detector(config(TEACHER_DIM, {"dec_layers": 3}), CLASSES)
    with pytest.raises(RgbtadError, match="student has 2 and the teacher 3"):
        model.attach_teacher(FrozenTeacher(deeper, "t", TEACHER_DIM, 0))
    student("decomposed", teacher_tadtr={"dec_layers": 3}, query_kd_layers="last")  # any depth
    with pytest.raises(RgbtadError, match="teacher's queries are 64-d but the student expects 32"):
        student("conventional", teacher_tadtr={"hidden_dim": 64})
    student("conventional", teacher_tadtr={"hidden_dim": 64}, teacher_feat_dim=64)  # projected
    with pytest.raises(RgbtadError, match="window"):
        model.attach_teacher(FrozenTeacher(build_detector(
            build_config({**config(TEACHER_DIM).to_dict(), "data": {"input_dim": TEACHER_DIM, "max_seq_len": 64}}),
            CLASSES), "t", TEACHER_DIM, 0))
    with pytest.raises(RgbtadError, match="distill.atom_weight"):
        build_model(config(STUDENT_DIM, method="conventional", atom_weight=1.0), CLASSES)
    with pytest.raises(RgbtadError, match="'c2ms' needs a detector with per-position outputs"):
        config(STUDENT_DIM, method="c2ms")
    with pytest.raises(RgbtadError, match="distill.query_kd_layers"):
        config(STUDENT_DIM, method="decomposed", query_kd_layers="first")


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Toy features (the teacher's) and a noisier copy of them (the student's)."""
    from rgbtad.synthetic.toy_features import make_toy_features

    root = tmp_path_factory.mktemp("tadtr_kd")
    ann = make_toy_features(root / "motion", num_train=8, num_test=4, num_classes=CLASSES, dim=16, seed=3,
                            min_len=60, max_len=120)
    (root / "rgb").mkdir()
    rng = np.random.default_rng(0)
    for path in sorted((root / "motion" / "features").glob("*.npy")):
        x = np.load(path)
        np.save(root / "rgb" / path.name, (x + rng.normal(0, 1.0, x.shape)).astype(np.float32))
    return root, ann


def toy_config(toy, features, **distill):
    root, ann = toy
    cfg = config(16, **distill)
    cfg.data.annotations, cfg.data.features = str(ann), str(features)
    cfg.data.train_split, cfg.data.val_split, cfg.data.crop_ratio = "train", "test", None
    cfg.train.batch_size, cfg.train.epochs, cfg.train.warmup_epochs, cfg.train.ema_decay = 4, 3, 0, 0.9
    cfg.train.learning_rate, cfg.train.log_every = 1e-3, 1
    return cfg


def test_train_runs_a_tadtr_student_with_its_teacher_and_infer_needs_neither(toy, tmp_path):
    from rgbtad.training.trainer import train

    root, ann = toy
    train(toy_config(toy, root / "motion" / "features"), tmp_path / "teacher", device="cpu", progress=False)
    cfg = toy_config(toy, root / "rgb", method="decomposed", teacher_run=str(tmp_path / "teacher"),
                     teacher_features=str(root / "motion" / "features"), teacher_input_dim=16, feat_weight=1.0)
    summary = train(cfg, tmp_path / "student", device="cpu", progress=False)
    assert json.loads((tmp_path / "student" / "summary.json").read_text())["epochs"] == 3
    with (tmp_path / "student" / "logs" / "train.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {row["epoch"] for row in rows} == {"0", "1", "2"}
    for name in ("final_loss", "loss_ce", "app_loss_ce", *TEACHER_TERMS):
        assert all(math.isfinite(float(row[name])) for row in rows), name
    assert float(rows[0]["kd_cls_loss"]) > 0
    (tmp_path / "teacher" / "config.yaml").unlink()  # the teacher run is gone
    pred = tmp_path / "pred.json"
    assert cli_main(["infer", str(tmp_path / "student"), "--features", str(root / "rgb"), "--ann", str(ann),
                     "--split", "test", "--out", str(pred)]) == 0
    metrics = tmp_path / "metrics.json"
    assert cli_main(["evaluate", "--gt", str(ann), "--pred", str(pred), "--split", "test",
                     "--json", str(metrics)]) == 0
    assert json.loads(metrics.read_text())["average_mAP"] == pytest.approx(summary["average_mAP"], abs=1e-9)
