"""Every student over every pyramid head: conventional KD and the decomposed student (each
fusion point) built on ActionFormer and on TriDet from the same config keys, trained a step,
their shared heads literally shared, their motion branch distilled against the teacher's
own head outputs, and predicting in eval mode from the student's features alone."""

import pytest
import torch

from rgbtad.config import build_config
from rgbtad.core.errors import RgbtadError
from rgbtad.data.detections import Detections
from rgbtad.detection import TriDetOutput, build_detector, build_model
from rgbtad.detection.registry import build_pyramid_head
from rgbtad.distill import FrozenTeacher

STUDENT_DIM, TEACHER_DIM, LENGTH, CLASSES = 12, 20, 64, 3
ANATOMY = {"embd_dim": 16, "fpn_dim": 16, "head_dim": 16, "n_head": 2, "n_mha_win_size": 5,
           "arch": [2, 1, 3], "regression_range": [[0, 4], [4, 8], [8, 16], [16, 10000]]}
FAMILIES = {"actionformer": {}, "tridet": {"tridet": {"sgp_mlp_dim": 16, "num_bins": 4}}}


def config(family: str, input_dim: int, **distill):
    return build_config({"data": {"input_dim": input_dim, "max_seq_len": LENGTH},
                         "model": {"name": family, **ANATOMY}, "train": {"droppath": 0.0},
                         "distill": distill, **FAMILIES[family]})


def student(family: str, method: str, **distill):
    torch.manual_seed(0)
    model = build_model(config(family, STUDENT_DIM, method=method, teacher_input_dim=TEACHER_DIM, **distill),
                        CLASSES)
    teacher = build_detector(config(family, TEACHER_DIM), CLASSES)
    model.attach_teacher(FrozenTeacher(teacher, "teacher", TEACHER_DIM, 16))
    return model


def batch():
    generator = torch.Generator().manual_seed(1)
    masks = torch.arange(LENGTH)[None] < torch.tensor([[50], [LENGTH]])
    feats = torch.randn(2, STUDENT_DIM, LENGTH, generator=generator) * masks[:, None]
    teacher = torch.randn(2, TEACHER_DIM, LENGTH, generator=generator) * masks[:, None]
    segments = [torch.tensor([[5.0, 20.0]]), torch.tensor([[10.0, 30.0], [40.0, 60.0]])]
    labels = [torch.tensor([0]), torch.tensor([1, 2])]
    return feats, masks, teacher, segments, labels


CASES = [("conventional", {}), ("decomposed", {}), ("decomposed", {"fuse_at": "projection"}),
         ("decomposed", {"share": "full", "fusion": "concat"})]


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize(("method", "options"), CASES)
def test_a_student_of_each_head_trains_and_predicts_from_rgb_alone(family, method, options):
    model = student(family, method, feat_weight=1.0, **options)
    feats, masks, teacher, segments, labels = batch()
    model.train()
    out = model(feats, masks, teacher_feats=teacher)
    losses = model.losses(out, segments, labels)
    assert set(model.loss_names) <= set(losses) and torch.isfinite(losses["final_loss"])
    assert losses["kd_cls_loss"] > 0 and losses["feat_loss"] > 0
    losses["final_loss"].backward()
    trained = [name for name, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert any(name.startswith(("detector.", "appearance.")) for name in trained)
    model.eval()
    with torch.no_grad():
        detections = model.postprocess(model(feats, masks), [
            {"video_id": f"v{i}", "fps": 30.0, "duration": 40.0, "feat_stride": 16, "feat_num_frames": 16}
            for i in range(2)])
    assert all(isinstance(d, Detections) and len(d.scores) > 0 for d in detections)


def test_the_tridet_decomposed_student_shares_the_trident_head_and_distils_its_outputs():
    model = student("tridet", "decomposed")
    assert type(model.joint).__name__ == "TriDetPyramidHead" and not hasattr(model.joint, "embed")
    feats, masks, teacher, _, _ = batch()
    model.train()
    out = model(feats, masks, teacher_feats=teacher)
    motion = out.branches["motion"]
    # the motion branch is decoded by the appearance branch's own Trident head: its offsets are
    # the expected bin offsets of that head, of the same kind as the teacher's
    assert isinstance(motion, TriDetOutput) and isinstance(out.teacher, TriDetOutput)
    assert motion.num_bins == out.teacher.num_bins == 4
    heads = {id(m) for m in (model.appearance.cls_head, model.appearance.reg_head, model.appearance.start_head)}
    assert not any(id(m) in heads for m in model.joint.modules())
    assert not hasattr(model, "motion_cls_head")


def test_the_projection_noise_of_tridet_reaches_both_student_branches():
    model = student("tridet", "decomposed", fuse_at="projection")
    assert model.appearance.embed.input_noise == model.motion_embed.input_noise == 0.0005
    feats, masks, teacher, _, _ = batch()
    model.train()
    a = model(feats, masks, teacher_feats=teacher).cls_logits[0]
    b = model(feats, masks, teacher_feats=teacher).cls_logits[0]
    assert not torch.equal(a, b)  # fresh noise each training step
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(feats, masks).cls_logits[0], model(feats, masks).cls_logits[0])


def test_a_family_without_a_pyramid_head_is_refused_by_name(monkeypatch):
    from rgbtad.detection import registry

    monkeypatch.delitem(registry._PYRAMID_HEADS, "tridet")
    cfg = config("tridet", STUDENT_DIM, method="decomposed", teacher_input_dim=TEACHER_DIM)
    with pytest.raises(RgbtadError, match="model.name 'tridet' has no neck and heads"):
        build_pyramid_head(cfg, CLASSES, input_dim=16)
