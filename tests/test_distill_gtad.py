"""The students over G-TAD: conventional KD and the decomposed student (each fusion, both
fusion points, both sharings) built from a G-TAD config, trained a step with every logged
term finite, their map KD exactly 0 against themselves, the start / end and map heads
literally shared by the branches, predicting from the RGB features alone in G-TAD's sliding
windows, and trained end to end by `train` with a G-TAD teacher run."""

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
from rgbtad.detection import build_detector, build_model
from rgbtad.detection.gtad import GTADOutput, spec_from_config
from rgbtad.distill import FrozenTeacher, GTADConventionalStudent, GTADDecomposedStudent
from rgbtad.distill.map_losses import MapKDLoss, binary_kl
from rgbtad.distill.map_students import graph_backbone, map_head

STUDENT_DIM, TEACHER_DIM, WINDOW, CLASSES = 12, 20, 32, 3
TINY = {"max_duration": 12, "hidden_dim_1d": 32, "hidden_dim_2d": 16, "hidden_dim_3d": 32, "groups": 4,
        "align_resolution": 4, "context_resolution": 4}
TEACHER_TERMS = ("kd_cls_loss", "kd_reg_loss", "feat_loss")
META = {"fps": 30.0, "duration": 12.0, "feat_stride": 4, "feat_num_frames": 16}
HEADS = ("start_head", "end_head", "align_conv", "map_layers")


def config(input_dim: int, gtad=None, **distill):
    return build_config({"data": {"input_dim": input_dim, "max_seq_len": WINDOW}, "model": {"name": "gtad"},
                         "gtad": {**TINY, **(gtad or {})}, "distill": distill})


def student(method: str, teacher_dim: int = TEACHER_DIM, teacher_gtad=None, gtad=None, **distill):
    torch.manual_seed(0)
    distill = {"feat_weight": 1.0, "kd_score_thresh": 0.0, **distill}
    model = build_model(config(STUDENT_DIM, gtad, method=method, teacher_input_dim=teacher_dim, **distill), CLASSES)
    teacher = build_detector(config(teacher_dim, {**(gtad or {}), **(teacher_gtad or {})}), CLASSES)
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


DAI = {"atom_weight": 1.0, "gcr_weight": 1.0, "abs_weight": 1.0, "atom_dim": 8}
CASES = [("conventional", {}), ("conventional", {"temperature": 2.0, "kd_reg_positions": "gt", **DAI}),
         ("decomposed", {}), ("decomposed", {"fuse_at": "projection"}), ("decomposed", {"share": "full"}),
         ("decomposed", {"teacher_feat_dim": 48, "teacher_gtad": {"hidden_dim_1d": 48}}),
         ("decomposed", {"gtad": {"context": "all", "multiclass": True}}),
         *[("decomposed", {"fusion": kind}) for kind in ("concat", "sum", "self_attn", "cross_attn", "diff_attn")]]


@pytest.mark.parametrize(("method", "options"), CASES)
def test_a_gtad_student_trains_and_predicts_from_rgb_alone(method, options):
    model = student(method, **options)
    assert type(model) is (GTADConventionalStudent if method == "conventional" else GTADDecomposedStudent)
    groups = model.param_groups(1e-4)  # G-TAD's: one group, every parameter decayed
    assert len(groups) == 1 and len(groups[0]["params"]) == len(list(model.parameters()))
    feats, masks, teacher, segments, labels = batch()
    model.train()
    losses = model.losses(model(feats, masks, teacher_feats=teacher), segments, labels)
    terms = [*TEACHER_TERMS, *(["atom_loss", "gcr_loss", "abs_loss"] if "atom_weight" in options else [])]
    assert set(model.loss_names) <= set(losses) and set(terms) <= set(model.loss_names)
    assert all(torch.isfinite(losses[name]) for name in model.loss_names)
    assert all(losses[name] > 0 for name in terms)
    losses["final_loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.teacher = None  # eval mode never needs it
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, STUDENT_DIM, 70), torch.arange(70)[None] < torch.tensor([[70], [20]]))
        detections = model.postprocess(out, [{"video_id": f"v{i}", **META} for i in range(2)])
    assert type(out) is GTADOutput  # G-TAD's sliding windows: 32 snippets every 16, a tail at the end
    assert out.window_video.tolist() == [0, 0, 0, 0, 1] and out.window_start.tolist() == [0, 16, 32, 38, 0]
    assert all(isinstance(d, Detections) and len(d.scores) > 0 for d in detections)
    if method == "decomposed" and options.get("fuse_at", "encoder") == "encoder":  # fused on real snippets only
        assert (out.feats[-1, :, 20:] == 0).all() and (out.feats[-1, :, :20] != 0).any()


def _map_output(generator, lengths=(25, WINDOW), classes=1, width=32):
    windows = len(lengths)
    return GTADOutput(torch.rand(windows, 1 + classes, TINY["max_duration"], WINDOW, generator=generator),
                      torch.rand(windows, WINDOW, generator=generator), torch.rand(windows, WINDOW, generator=generator),
                      torch.randn(windows, width, WINDOW, generator=generator), torch.arange(windows),
                      torch.zeros(windows, dtype=torch.int64), torch.tensor(lengths))


def test_the_map_kd_reads_only_the_anchors_and_snippets_gtad_trains_on():
    cfg = config(STUDENT_DIM, feat_weight=1.0, kd_score_thresh=0.0, temperature=1.0)
    kd = MapKDLoss(cfg.distill, spec_from_config(cfg, CLASSES), 32)
    generator = torch.Generator().manual_seed(0)
    student_out, teacher_out = _map_output(generator), _map_output(generator)
    terms, total = kd(student_out, teacher_out, [torch.zeros(0, 2)] * 2, [torch.zeros(0)] * 2)
    assert set(terms) == set(TEACHER_TERMS) and total == sum(terms.values())
    p, q = student_out.cls_scores[:, :, 0, 0], teacher_out.cls_scores[:, :, 0, 0]  # one-anchor check of the KL
    explicit = q * (q / p).log() + (1 - q) * ((1 - q) / (1 - p)).log()
    assert binary_kl(p, q, torch.ones_like(p, dtype=torch.bool)).item() == pytest.approx(explicit.mean().item(),
                                                                                       rel=1e-4)
    duration = torch.arange(TINY["max_duration"]).view(-1, 1)
    start = torch.arange(WINDOW).view(1, -1)
    outside = [start + duration >= 25, start + duration >= WINDOW]  # past the video, past the window
    with torch.no_grad():
        for window, anchors in enumerate(outside):
            teacher_out.proposal_map[window][:, anchors] = 0.5
        teacher_out.start[0, 25:], teacher_out.end[0, 25:], teacher_out.feats[0, :, 25:] = 0.5, 0.5, 7.0
    again, _ = kd(student_out, teacher_out, [torch.zeros(0, 2)] * 2, [torch.zeros(0)] * 2)
    assert all(torch.equal(terms[name], again[name]) for name in TEACHER_TERMS)
    with torch.no_grad():
        teacher_out.proposal_map[0, :, 0, 0] = 0.5  # a real anchor
    again, _ = kd(student_out, teacher_out, [torch.zeros(0, 2)] * 2, [torch.zeros(0)] * 2)
    assert again["kd_cls_loss"] != terms["kd_cls_loss"] and again["kd_reg_loss"] != terms["kd_reg_loss"]


def _become_the_teacher(model, teacher):
    """Give the student's teacher-facing path the teacher's weights."""
    if isinstance(model, GTADConventionalStudent):
        model.detector.load_state_dict(teacher.state_dict())
        return
    for name in HEADS:
        getattr(model.appearance, name).load_state_dict(getattr(teacher, name).state_dict())
    model.motion_embed.load_state_dict(teacher.embed.state_dict())
    model.motion_block1.load_state_dict(teacher.block1.state_dict())
    model.motion_block2.load_state_dict(teacher.block2.state_dict())


@pytest.mark.parametrize("method", ["conventional", "decomposed"])
@pytest.mark.parametrize("options", [{}, {"kd_reg_positions": "gt", "temperature": 2.0}])
def test_the_teacher_terms_vanish_when_the_student_is_the_teacher(method, options):
    model = student(method, teacher_dim=STUDENT_DIM, **options)
    _become_the_teacher(model, model.teacher.model)
    feats, masks, _, segments, labels = batch()
    model.train()
    losses = model.losses(model(feats, masks, teacher_feats=feats), segments, labels)
    assert all(losses[name].item() == 0.0 for name in TEACHER_TERMS), {n: losses[n].item() for n in TEACHER_TERMS}
    other = model.teacher.model
    with torch.no_grad():
        other.map_layers[-1].bias.add_(0.5)  # a different teacher teaches again
        other.start_head[1].bias.add_(0.5)
        other.block2.tconvs[-1].bias.add_(0.5)
    losses = model.losses(model(feats, masks, teacher_feats=feats), segments, labels)
    assert all(losses[name] > 0 for name in TEACHER_TERMS)


def test_the_branches_share_the_heads_and_the_motion_branch_learns_only_from_the_teacher():
    model = student("decomposed", hard_weight=0.0, joint_weight=0.0)
    feats, masks, teacher, segments, labels = batch()
    model.train()
    out = model(feats, masks, teacher_feats=teacher)
    model.losses(out, segments, labels)["final_loss"].backward()
    grads = {name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    # the teacher terms train P_M, the motion backbone and the shared heads, nothing of the
    # appearance branch's own and nothing of the joint detector
    assert {"motion_embed.weight", "appearance.start_head.1.weight", "appearance.end_head.1.weight",
            "appearance.align_conv.conv.weight", "appearance.map_layers.7.weight"} <= grads
    assert any(n.startswith("motion_block1.") for n in grads) and any(n.startswith("motion_block2.") for n in grads)
    assert not any(n.startswith(("appearance.embed", "appearance.block", "joint.", "fusion.")) for n in grads)
    for name in HEADS:  # the appearance branch's (both branches') and the joint head's, nothing else
        assert len([m for key, m in model.named_modules() if key.endswith(name)]) == 2
    app = model.appearance
    with torch.no_grad():
        app.map_layers[-1].bias.add_(1.0)  # both branches read these very modules
        app.start_head[1].bias.add_(1.0)
        again = model(feats, masks, teacher_feats=teacher)
    for branch in ("appearance", "motion"):
        before, after = out.branches[branch], again.branches[branch]
        assert (after.proposal_map > before.proposal_map).all() and (after.start > before.start).all()
        assert torch.equal(after.end, before.end) and torch.equal(after.feats, before.feats)
    assert torch.equal(again.proposal_map, out.proposal_map)  # the joint detector has its own heads
    full = student("decomposed", share="full")
    assert not hasattr(full, "motion_block1") and not hasattr(full, "motion_block2")
    assert model.joint.embed is None and model.joint.block1 is None  # fuse_at encoder: a joint head only


def test_the_stages_of_the_students_are_gtads_own():
    torch.manual_seed(0)
    model = build_detector(config(STUDENT_DIM, {"context": "all"}), CLASSES).eval()
    feats, masks = torch.randn(2, STUDENT_DIM, 70), torch.arange(70)[None] < torch.tensor([[70], [20]])
    with torch.no_grad():
        whole = model(feats, masks)
        windows, video, starts, lengths = model.windows(feats, masks)
        base, graph, indices = graph_backbone(model.block1, model.block2, torch.relu(model.embed(windows)))
        split = map_head(model, base, graph, indices)
    assert torch.equal(video, whole.window_video) and torch.equal(starts, whole.window_start)
    assert torch.equal(lengths, whole.lengths)
    for ours, theirs in zip([*split, graph], [whole.proposal_map, whole.start, whole.end, whole.feats]):
        assert torch.allclose(ours, theirs, atol=1e-6)  # eval_chunk splits the batch of windows
    student_windows = student("decomposed").eval()
    with torch.no_grad():
        out = student_windows(feats, masks)
    assert torch.equal(out.window_video, whole.window_video) and torch.equal(out.window_start, whole.window_start)


def test_what_cannot_teach_a_gtad_student_is_refused_by_name():
    model = build_model(config(STUDENT_DIM, method="decomposed", teacher_input_dim=TEACHER_DIM, feat_weight=1.0),
                        CLASSES)
    pyramid = build_config({"data": {"input_dim": TEACHER_DIM, "max_seq_len": 64}, "model": {
        "embd_dim": 16, "fpn_dim": 16, "head_dim": 16, "n_head": 2, "n_mha_win_size": 5, "arch": [2, 1, 3],
        "regression_range": [[0, 4], [4, 8], [8, 16], [16, 10000]]}})
    with pytest.raises(RgbtadError, match="G-TAD teacher.s proposal maps, but the teacher is ActionFormer"):
        model.attach_teacher(FrozenTeacher(build_detector(pyramid, CLASSES), "t", TEACHER_DIM, 16))
    with pytest.raises(RgbtadError, match="gtad.max_duration is 8, the student's 12"):
        student("decomposed", teacher_gtad={"max_duration": 8})
    with pytest.raises(RgbtadError, match="number of map classes .gtad.multiclass. is 3, the student's 1"):
        student("conventional", teacher_gtad={"multiclass": True})
    with pytest.raises(RgbtadError, match="graph features are 48-d but the student expects 32"):
        student("conventional", teacher_gtad={"hidden_dim_1d": 48})
    student("conventional", teacher_gtad={"hidden_dim_1d": 48}, feat_weight=0.0)  # no feature term: any width
    wider = build_config({**config(TEACHER_DIM).to_dict(), "data": {"input_dim": TEACHER_DIM, "max_seq_len": 48}})
    with pytest.raises(RgbtadError, match=r"window \(data.max_seq_len\) is 48, the student's 32"):
        model.attach_teacher(FrozenTeacher(build_detector(wider, CLASSES), "t", TEACHER_DIM, 0))
    with pytest.raises(RgbtadError, match="reads 12-d features but distill.teacher_input_dim is 20"):
        model.attach_teacher(FrozenTeacher(build_detector(config(STUDENT_DIM), CLASSES), "t", STUDENT_DIM, 0))
    with pytest.raises(RgbtadError, match="'c2ms' needs a detector with per-position outputs, not model.name 'gtad'"):
        config(STUDENT_DIM, method="c2ms")
    with pytest.raises(RgbtadError, match="fusion width 32 is not divisible by 5 heads"):
        build_model(build_config({**config(STUDENT_DIM, method="decomposed", fusion="cross_attn").to_dict(),
                                  "model": {"name": "gtad", "n_head": 5}}), CLASSES)
    model.attach_teacher(FrozenTeacher(build_detector(config(TEACHER_DIM), CLASSES), "t", TEACHER_DIM, 0))
    model.train()
    with pytest.raises(ValueError, match="trains on windows of 32 snippets"):
        model(torch.randn(1, STUDENT_DIM, 40), torch.ones(1, 40, dtype=torch.bool),
              teacher_feats=torch.randn(1, TEACHER_DIM, 40))


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Toy features (the teacher's) and a noisier copy of them (the student's)."""
    from rgbtad.synthetic.toy_features import make_toy_features

    root = tmp_path_factory.mktemp("gtad_kd")
    ann = make_toy_features(root / "motion", num_train=8, num_test=3, num_classes=CLASSES, dim=16, seed=3,
                            min_len=50, max_len=90)
    (root / "rgb").mkdir()
    rng = np.random.default_rng(0)
    for path in sorted((root / "motion" / "features").glob("*.npy")):
        x = np.load(path)
        np.save(root / "rgb" / path.name, (x + rng.normal(0, 1.0, x.shape)).astype(np.float32))
    return root, ann


def toy_config(toy, features, **distill):
    root, ann = toy
    cfg = config(16, {"multiclass": True}, **distill)
    cfg.data.annotations, cfg.data.features = str(ann), str(features)
    cfg.data.train_split, cfg.data.val_split = "train", "test"
    cfg.train.batch_size, cfg.train.epochs, cfg.train.warmup_epochs, cfg.train.ema_decay = 4, 3, 0, 0.9
    cfg.train.learning_rate, cfg.train.log_every = 1e-3, 1
    return cfg


def test_train_runs_a_gtad_student_with_its_teacher_and_infer_needs_neither(toy, tmp_path):
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
    for name in ("final_loss", "cls_loss", "boundary_loss", "app_cls_loss", "app_boundary_loss", *TEACHER_TERMS):
        assert all(math.isfinite(float(row[name])) for row in rows), name
    assert float(rows[0]["kd_cls_loss"]) > 0 and float(rows[0]["kd_reg_loss"]) > 0
    (tmp_path / "teacher" / "config.yaml").unlink()  # the teacher run is gone
    pred = tmp_path / "pred.json"
    assert cli_main(["infer", str(tmp_path / "student"), "--features", str(root / "rgb"), "--ann", str(ann),
                     "--split", "test", "--out", str(pred)]) == 0
    metrics = tmp_path / "metrics.json"
    assert cli_main(["evaluate", "--gt", str(ann), "--pred", str(pred), "--split", "test",
                     "--json", str(metrics)]) == 0
    assert json.loads(metrics.read_text())["average_mAP"] == pytest.approx(summary["average_mAP"], abs=1e-9)
