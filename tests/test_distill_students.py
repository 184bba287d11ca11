"""Students and teachers: shared heads, a frozen unregistered teacher, gradient routing,
the RGB-only inference path, paired features and config checks."""

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from rgbtad.config import build_config, load_config
from rgbtad.core.errors import RgbtadError
from rgbtad.data.annotations import load_annotations
from rgbtad.data.datasets import FeatureDataset
from rgbtad.detection import ActionFormer, build_detector
from rgbtad.detection.heads import ClsHead
from rgbtad.distill import (
    ConventionalKDStudent,
    DecomposedStudent,
    DistillOutput,
    FrozenTeacher,
    build_model,
)
from rgbtad.features.paired import PairedFeatureStore, training_store
from rgbtad.features.store import FeatureStore
from rgbtad.runs.run_dir import save_run
from rgbtad.runs.teacher import load_teacher
from rgbtad.synthetic.toy_features import make_toy_features
from rgbtad.training.optim import ModelEma, make_optimizer

TINY = {"embd_dim": 32, "fpn_dim": 32, "head_dim": 32, "n_head": 2, "n_mha_win_size": 9,
        "arch": [2, 1, 3], "regression_range": [[0, 4], [4, 8], [8, 16], [16, 10000]]}
STUDENT_DIM, TEACHER_DIM, LENGTH = 12, 20, 128


def student_cfg(**distill):
    values = {"method": "decomposed", "teacher_input_dim": TEACHER_DIM}
    values.update(distill)
    return build_config({"data": {"input_dim": STUDENT_DIM, "max_seq_len": LENGTH},
                         "model": dict(TINY), "train": {"droppath": 0.0}, "distill": values})


def make_teacher(**model):
    cfg = build_config({"data": {"input_dim": TEACHER_DIM, "max_seq_len": LENGTH},
                        "model": {**TINY, **model}})
    torch.manual_seed(1)
    return FrozenTeacher(build_detector(cfg, 3), "teacher_run", TEACHER_DIM, cfg.model.fpn_dim)


def make_student(**distill):
    torch.manual_seed(0)
    model = build_model(student_cfg(**distill), 3)
    model.attach_teacher(make_teacher())
    return model


def batch(seed=0):
    generator = torch.Generator().manual_seed(seed)
    feats = torch.randn(2, STUDENT_DIM + TEACHER_DIM, LENGTH, generator=generator)
    masks = torch.arange(LENGTH)[None] < torch.tensor([[100], [LENGTH]])
    feats = feats * masks[:, None]
    segments = [torch.tensor([[10.0, 30.0]]), torch.tensor([[5.0, 20.0], [50.0, 90.0]])]
    labels = [torch.tensor([0]), torch.tensor([1, 2])]
    return feats, masks, segments, labels


def train_forward(model, feats, masks):
    """The training forward on a `batch()`: its teacher channels are the teacher_feats input."""
    return model(feats[:, :STUDENT_DIM], masks, teacher_feats=feats[:, STUDENT_DIM:])


def test_build_model_dispatches_on_the_method():
    assert isinstance(build_model(student_cfg(method="none"), 3), ActionFormer)
    assert isinstance(build_model(student_cfg(method="conventional"), 3), ConventionalKDStudent)
    assert isinstance(build_model(student_cfg(), 3), DecomposedStudent)


def test_shared_heads_are_the_same_parameters_for_both_branches():
    model = make_student().train()
    feats, masks, _, _ = batch()
    out = train_forward(model, feats, masks)
    assert isinstance(out, DistillOutput) and set(out.branches) == {"appearance", "motion"}
    # one head for both branches plus the joint detector's: no motion-branch head exists
    heads = [name for name, module in model.named_modules() if isinstance(module, ClsHead)]
    assert heads == ["appearance.cls_head", "joint.cls_head"]
    # moving the shared classifier's bias moves both branches' logits by exactly that much
    with torch.no_grad():
        model.appearance.cls_head.logits.bias.add_(1.0)
    shifted = train_forward(model, feats, masks)
    for branch in ("appearance", "motion"):
        before = torch.cat(out.branches[branch].cls_logits, 1)
        after = torch.cat(shifted.branches[branch].cls_logits, 1)
        valid = torch.cat(out.branches[branch].masks, 1)
        torch.testing.assert_close(after[valid], before[valid] + 1.0)
    torch.testing.assert_close(torch.cat(shifted.cls_logits, 1), torch.cat(out.cls_logits, 1))  # joint


def test_share_full_uses_one_encoder():
    model = make_student(share="full").train()
    assert not hasattr(model, "motion_encoder")
    feats, masks, segments, labels = batch()
    losses = model.losses(train_forward(model, feats, masks), segments, labels)
    assert torch.isfinite(losses["final_loss"])


def test_teacher_is_frozen_and_outside_the_student():
    model = make_student(method="decomposed")
    teacher = model.teacher
    teacher_params = list(teacher.model.parameters())
    assert all(not p.requires_grad for p in teacher_params)
    assert not any(key.startswith("teacher") for key in model.state_dict())
    student_ids = {id(p) for p in model.parameters()}
    assert not student_ids & {id(p) for p in teacher_params}
    grouped = {id(p) for group in model.param_groups(0.05) for p in group["params"]}
    assert grouped == student_ids  # every student parameter, no teacher parameter
    ema = ModelEma(model, 0.9)
    assert ema.module.teacher is teacher  # shared by reference, not copied into the EMA
    assert copy.deepcopy(model).teacher is teacher
    # a training step moves the student, never the teacher (which stays in eval mode)
    before = [p.clone() for p in teacher_params]
    optimizer = make_optimizer(model, build_config({"train": {"learning_rate": 1e-2}}).train)
    model.train()
    assert not teacher.model.training
    feats, masks, segments, labels = batch()
    model.losses(train_forward(model, feats, masks), segments, labels)["final_loss"].backward()
    optimizer.step()
    ema.update(model)
    assert all(torch.equal(a, b) for a, b in zip(before, teacher_params))
    assert all(p.grad is None for p in teacher_params)


@pytest.mark.parametrize("method", ["conventional", "decomposed"])
def test_losses_are_finite_and_named(method):
    model = make_student(method=method, feat_weight=1.0, atom_weight=1.0, gcr_weight=1.0,
                         abs_weight=1.0).train()
    feats, masks, segments, labels = batch()
    losses = model.losses(train_forward(model, feats, masks), segments, labels)
    assert set(losses) == set(model.loss_names)
    for name in ("kd_cls_loss", "kd_reg_loss", "feat_loss", "atom_loss", "gcr_loss", "abs_loss"):
        assert name in losses and torch.isfinite(losses[name]), name
    losses["final_loss"].backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("fuse_at", ["encoder", "projection"])
def test_detach_fusion_inputs_keeps_the_joint_loss_out_of_the_branches(fuse_at):
    feats, masks, segments, labels = batch()
    for detach in (False, True):
        model = make_student(detach_fusion_inputs=detach, fuse_at=fuse_at).train()
        out = train_forward(model, feats, masks)
        model.joint.losses(out, segments, labels)["final_loss"].backward()
        branches = [model.appearance.embed, model.motion_embed]
        if fuse_at == "encoder":
            branches += [model.appearance.encoder, model.motion_encoder]
        for module in branches:
            grads = [p.grad for p in module.parameters()]
            reached = any(g is not None and g.abs().sum() > 0 for g in grads)
            assert reached is not detach
        assert all(p.grad is not None for p in model.fusion.parameters())


@pytest.mark.parametrize("fuse_at", ["encoder", "projection"])
def test_inference_runs_the_rgb_path_only(fuse_at):
    model = make_student(fuse_at=fuse_at).train()
    feats, masks, _, _ = batch()
    with torch.no_grad():  # the joint detector as trained: RGB and teacher channels, teacher attached
        trained = train_forward(model, feats, masks)
    model.eval()
    model.teacher = None  # and nothing asks for it
    training_only = ["appearance.neck", "appearance.cls_head", "appearance.reg_head", "motion_neck", "kd"]
    if fuse_at == "projection":
        training_only += ["appearance.encoder", "motion_encoder"]
    else:  # the joint detector is a neck and heads on the fused encoder pyramids
        assert not hasattr(model.joint, "embed") and not hasattr(model.joint, "encoder")
    called = []
    for name in training_only:
        model.get_submodule(name).register_forward_hook(lambda *args, name=name: called.append(name))
    with torch.no_grad():
        out = model(feats[:, :STUDENT_DIM], masks)
    assert called == [] and not isinstance(out, DistillOutput)
    assert [x.shape[1] for x in out.cls_logits] == [128, 64, 32, 16]
    # what is deployed is what was trained: from the RGB channels alone, without the teacher, the
    # outputs are the joint detector's of the training forward (no dropout or drop-path here), not
    # the appearance branch's, and not a joint detector with its motion input missing
    for name in ("cls_logits", "offsets"):
        for deployed, joint, valid in zip(getattr(out, name), getattr(trained, name), out.masks):
            torch.testing.assert_close(deployed[valid], joint[valid], atol=1e-6, rtol=1e-6)
    appearance = trained.branches["appearance"].cls_logits[0]
    assert not torch.allclose(out.cls_logits[0][out.masks[0]], appearance[out.masks[0]], atol=1e-3)
    # and zero padding does not reach the real steps: video 0 (100 steps) padded to 256
    longer = torch.zeros(1, STUDENT_DIM, 2 * LENGTH)
    longer[..., :LENGTH] = feats[:1, :STUDENT_DIM]
    with torch.no_grad():
        padded = model(longer, torch.arange(2 * LENGTH)[None] < 100)
    for level, valid in enumerate((100, 50, 25, 13)):
        assert int(out.masks[level][0].sum()) == valid
        torch.testing.assert_close(padded.cls_logits[level][0, :valid], out.cls_logits[level][0, :valid],
                                   atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="student-only features with 12 channels"):
        model(feats, masks)
    model.train()
    with pytest.raises(RuntimeError, match="needs its teacher"):
        train_forward(model, feats, masks)


def test_teacher_must_fit_the_student():
    model = build_model(student_cfg(feat_weight=1.0), 3)
    with pytest.raises(RgbtadError, match="pyramid strides"):
        model.attach_teacher(make_teacher(arch=[2, 1, 2], regression_range=[[0, 4], [4, 8], [8, 10000]]))
    with pytest.raises(RgbtadError, match="features are 64-d"):
        model.attach_teacher(make_teacher(fpn_dim=64, embd_dim=64))
    wrong = make_teacher()
    wrong.input_dim = 7
    with pytest.raises(RgbtadError, match="reads 7-d features"):
        model.attach_teacher(wrong)


def test_load_teacher_checks_the_run(tmp_path):
    cfg = build_config({"data": {"input_dim": TEACHER_DIM, "max_seq_len": LENGTH}, "model": TINY})
    save_run(tmp_path / "teacher", cfg, ["a", "b", "c"], build_detector(cfg, 3).state_dict())
    with pytest.raises(RgbtadError, match="'distill.teacher_run' is not set"):
        load_teacher(student_cfg(), ["a", "b", "c"])
    teacher = load_teacher(student_cfg(teacher_run=str(tmp_path / "teacher")), ["a", "b", "c"])
    assert not teacher.model.training and teacher.input_dim == TEACHER_DIM
    with pytest.raises(RgbtadError, match="classes differ"):
        load_teacher(student_cfg(teacher_run=str(tmp_path / "teacher")), ["a", "c", "b"])
    with pytest.raises(RgbtadError, match="not a run directory"):
        load_teacher(student_cfg(teacher_run=str(tmp_path / "nothing")), ["a", "b", "c"])


def test_paired_store_concatenates_and_aligns(tmp_path):
    for name, dim, length in (("student", 3, 10), ("teacher", 2, 11), ("far", 2, 14)):
        (tmp_path / name).mkdir()
        np.save(tmp_path / name / "v.npy", np.arange(length * dim, dtype=np.float32).reshape(length, dim))
    paired = PairedFeatureStore(FeatureStore(tmp_path / "student"), FeatureStore(tmp_path / "teacher"))
    student, teacher = paired.load("v")
    assert student.shape == (10, 3) and teacher.shape == (10, 2)  # one trailing teacher snippet dropped
    np.testing.assert_array_equal(teacher, np.load(tmp_path / "teacher" / "v.npy")[:10])
    far = PairedFeatureStore(FeatureStore(tmp_path / "student"), FeatureStore(tmp_path / "far"))
    with pytest.raises(RgbtadError, match=r"student/v.npy has 10 snippets but .*far/v.npy has 14"):
        far.load("v")
    np.save(tmp_path / "student" / "w.npy", np.zeros((4, 3), dtype=np.float32))
    assert not paired.exists("w") and paired.path("w") == tmp_path / "teacher" / "w.npy"
    assert paired.path("x") == tmp_path / "student" / "x.npy"


def test_training_crops_cut_student_and_teacher_alike(tmp_path):
    ann = make_toy_features(tmp_path, num_train=3, num_test=0, num_classes=2, dim=4, seed=0,
                            min_len=300, max_len=320)
    # THUMOS layout: both modalities in one file; teacher = 2 * student + 1
    (tmp_path / "both").mkdir()
    for path in (tmp_path / "features").iterdir():
        x = np.load(path)
        np.save(tmp_path / "both" / path.name, np.concatenate([x, 2 * x + 1], axis=1))
    cfg = build_config({"data": {"annotations": str(ann), "features": str(tmp_path / "both"),
                                 "channels": "0:4", "input_dim": 4, "max_seq_len": 128,
                                 "train_split": "train"},
                        "distill": {"method": "conventional", "teacher_channels": "4:8",
                                    "teacher_input_dim": 4}})
    store = training_store(cfg)
    assert isinstance(store, PairedFeatureStore)
    dataset = FeatureDataset(load_annotations(ann).split("train"), store, cfg.data, training=True,
                             class_names=["action_0", "action_1"], seed=1)
    for epoch in range(2):
        dataset.set_epoch(epoch)
        for item in dataset:
            feats, teacher = item["feats"], item["teacher_feats"]
            assert feats.shape == teacher.shape == (4, 128)
            torch.testing.assert_close(teacher, 2 * feats + 1)
    assert isinstance(training_store(build_config({"data": {"features": str(tmp_path / "both")}})),
                      FeatureStore)


@pytest.mark.parametrize("values, message", [
    ({"method": "c3"}, "'distill.method'"),
    ({"fusion": "max"}, "'distill.fusion'"),
    ({"share": "heads"}, "'distill.share'"),
    ({"kd_cls_weight": -1}, "'distill.kd_cls_weight' must be >= 0"),
    ({"temperature": 0}, "'distill.temperature' must be positive"),
    ({"laf_window": 4}, "'distill.laf_window' must be a positive odd number"),
    ({"gcr_mode": "spatial"}, "'distill.gcr_mode'"),
])
def test_config_rejects_bad_distill_values(values, message):
    with pytest.raises(RgbtadError, match=message):
        build_config({"distill": values})


def test_config_overrides_reach_the_distill_section():
    cfg = build_config({}, ["distill.method=decomposed", "distill.fusion=concat",
                            "distill.detach_fusion_inputs=true"])
    assert (cfg.distill.method, cfg.distill.fusion, cfg.distill.detach_fusion_inputs) == \
        ("decomposed", "concat", True)
    assert build_config().distill.method == "none"


@pytest.mark.parametrize("name", ["decomposed", "conventional_kd", "augmented_rgb"])
def test_thumos_configs_pair_an_rgb_student_with_the_flow_teacher(name):
    configs = Path(__file__).resolve().parents[1] / "configs"
    student = load_config(configs / f"thumos_i3d_{name}.yaml")
    teacher = load_config(configs / "thumos_i3d_flow.yaml")
    assert student.distill.method != "none"
    assert (student.data.channels, student.data.input_dim) == ("rgb", 1024)
    assert (student.distill.teacher_channels, student.distill.teacher_input_dim) == \
        (teacher.data.channels, teacher.data.input_dim)
    assert student.distill.teacher_run == "runs/thumos_i3d_flow"
    assert student.distill.teacher_features == "" and student.data.features == teacher.data.features
