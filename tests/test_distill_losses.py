"""Distillation losses on hand-made cases: zero at agreement, masks respected, known values."""

import math

import pytest
import torch

from rgbtad.config import build_config
from rgbtad.detection import DetectorOutput
from rgbtad.distill.losses import (
    TeacherLoss,
    abs_loss,
    atomic_contrastive_loss,
    feature_mimic_loss,
    gcr_loss,
    offset_kd_loss,
    sigmoid_kd_loss,
)


def _mask(batch, length, valid):
    return torch.arange(length)[None].expand(batch, length) < torch.tensor(valid)[:, None]


def test_sigmoid_kd_is_zero_at_agreement_and_ignores_padding():
    torch.manual_seed(0)
    logits = torch.randn(2, 10, 3)
    valid = _mask(2, 10, [7, 10])
    assert sigmoid_kd_loss(logits, logits, valid, 5.0).item() == pytest.approx(0.0, abs=1e-6)
    student = logits + 0.5 * torch.randn(2, 10, 3)
    loss = sigmoid_kd_loss(student, logits, valid, 5.0)
    assert loss.item() > 0
    garbage = student.clone()
    garbage[0, 7:] = 50.0
    assert sigmoid_kd_loss(garbage, logits, valid, 5.0).item() == pytest.approx(loss.item())
    # hand value: one position, one class, p_t = 0.5, p_s = sigmoid(1); summed, then / normaliser
    one = torch.ones(1, 1, dtype=torch.bool)
    p = torch.sigmoid(torch.tensor(1.0)).item()
    expected = 0.5 * math.log(0.5 / p) + 0.5 * math.log(0.5 / (1 - p))
    value = sigmoid_kd_loss(torch.ones(1, 1, 1), torch.zeros(1, 1, 1), one, 1.0)
    assert value.item() == pytest.approx(expected, rel=1e-5)
    two = torch.ones(1, 2, dtype=torch.bool)
    assert sigmoid_kd_loss(torch.ones(1, 2, 1), torch.zeros(1, 2, 1), two, 4.0).item() \
        == pytest.approx(expected / 2, rel=1e-5)
    # temperature: logits divided by T, loss multiplied by T^2
    assert sigmoid_kd_loss(2 * torch.ones(1, 1, 1), torch.zeros(1, 1, 1), one, 1.0, temperature=2.0).item() \
        == pytest.approx(4 * expected, rel=1e-5)


def test_offset_kd_at_selected_positions_only():
    student = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]]])
    teacher = torch.tensor([[[1.0, 1.0], [1.0, 1.0], [0.0, 0.0]]])
    positions = torch.tensor([[True, True, False]])
    assert offset_kd_loss(student, teacher, positions).item() == pytest.approx((0 + 1 + 2 + 3) / 4)
    nothing = offset_kd_loss(student.requires_grad_(), teacher, torch.zeros(1, 3, dtype=torch.bool))
    nothing.backward()
    assert nothing.item() == 0 and torch.all(student.grad == 0)


def test_feature_mimic():
    x = torch.randn(2, 4, 6)
    mask = _mask(2, 6, [3, 6])
    assert feature_mimic_loss(x, x, mask).item() == 0
    y = x + 2.0
    y[0, :, 3:] = 100.0  # padding
    assert feature_mimic_loss(x, y, mask).item() == pytest.approx(4.0)


def test_atomic_contrastive_prefers_aligned_snippets():
    torch.manual_seed(0)
    teacher = torch.randn(2, 8, 12)
    student = teacher + 0.1 * torch.randn(2, 8, 12)
    mask = _mask(2, 12, [9, 12])
    aligned = atomic_contrastive_loss(student, teacher, mask)
    shuffled = atomic_contrastive_loss(student[:, :, torch.randperm(12)], teacher, mask)
    assert aligned < shuffled
    # padding is neither a query nor a negative
    padded = student.clone()
    padded[0, :, 9:] = teacher[0, :, :3]
    torch.testing.assert_close(atomic_contrastive_loss(padded, teacher, mask), aligned)
    # hand value: orthonormal snippets, student == teacher: logits 1/tau on the diagonal, 0 elsewhere
    eye = torch.eye(4)[None]
    full = torch.ones(1, 4, dtype=torch.bool)
    expected = -math.log(math.exp(10) / (math.exp(10) + 3))
    assert atomic_contrastive_loss(eye, eye, full, tau=0.1).item() == pytest.approx(expected, rel=1e-3)


def test_gcr_channel_and_temporal():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 10)
    mask = _mask(2, 10, [6, 10])
    for mode in ("channel", "temporal"):
        assert gcr_loss(x, x, mask, mode).item() == pytest.approx(0.0, abs=1e-6)
        noisy = x.clone()
        noisy[0, :, 6:] = 30 * torch.randn(5, 4)
        assert gcr_loss(noisy, x, mask, mode).item() == pytest.approx(0.0, abs=1e-6), mode
    # channel: covariance of mean-centred features; a constant shift changes nothing,
    # doubling the teacher makes G_t = 4 G_s
    assert gcr_loss(x + 3.0, x, mask, "channel").item() == pytest.approx(0.0, abs=1e-5)
    one = x[1:]
    full = mask[1:]
    centred = one[0] - one[0].mean(-1, keepdim=True)
    gram = centred @ centred.T / 10
    expected = (3 * gram).square().sum().item() / 25
    assert gcr_loss(one, 2 * one, full, "channel").item() == pytest.approx(expected, rel=1e-4)
    # temporal: cosine affinities, blind to each snippet's norm
    assert gcr_loss(x * (0.5 + torch.rand(2, 1, 10)), x, mask, "temporal").item() == pytest.approx(0.0, abs=1e-5)
    assert gcr_loss(torch.randn(2, 5, 10), x, mask, "temporal").item() > 0


def test_abs_boundary_saliency():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 10)
    mask = _mask(2, 10, [7, 10])
    for norm in ("softmax", "max"):
        assert abs_loss(x, x, mask, norm).item() == pytest.approx(0.0, abs=1e-7)
        assert abs_loss(x + 5.0, x, mask, norm).item() == pytest.approx(0.0, abs=1e-6)
        padded = x.clone()
        padded[0, :, 7:] = 40.0
        assert abs_loss(padded, x, mask, norm).item() == pytest.approx(0.0, abs=1e-6)
        assert abs_loss(torch.randn(2, 4, 10), x, mask, norm).item() > 0
    # max normalisation, hand case: a step at t=2 in the student, at t=3 in the teacher
    student = torch.tensor([[[0.0, 0, 0, 1, 1]]])
    teacher = torch.tensor([[[0.0, 0, 1, 1, 1]]])
    full = torch.ones(1, 5, dtype=torch.bool)
    assert abs_loss(student, teacher, full, "max").item() == pytest.approx(2 / 4)
    # one real snippet: no pairs, no NaN
    single = _mask(1, 5, [1])
    assert abs_loss(student, teacher, single, "softmax").item() == 0


def _output(logits, offsets, feats, masks):
    points = [torch.stack([torch.arange(logits.shape[1], dtype=torch.float32),
                           torch.zeros(logits.shape[1]), torch.full((logits.shape[1],), 1e4),
                           torch.ones(logits.shape[1])], dim=1)]
    return DetectorOutput([logits], [offsets], [masks], points, [feats])


def test_teacher_loss_terms_weights_and_positions():
    cfg = build_config({"distill": {"kd_cls_weight": 2.0, "kd_reg_weight": 1.0, "feat_weight": 0.5,
                                    "abs_weight": 0.0, "kd_score_thresh": 0.5}}).distill
    loss = TeacherLoss(cfg, student_dim=4, teacher_dim=6, num_classes=2)
    assert loss.names == ["kd_cls_loss", "kd_reg_loss", "feat_loss"]
    assert isinstance(loss.project, torch.nn.Conv1d)  # widths differ and features are mimicked
    masks = torch.ones(1, 3, dtype=torch.bool)
    teacher_logits = torch.tensor([[[5.0, -5.0], [-5.0, -5.0], [-5.0, 5.0]]])  # confident at 0 and 2
    student = _output(torch.zeros(1, 3, 2), torch.tensor([[[1.0, 1.0], [5.0, 5.0], [2.0, 2.0]]]),
                      torch.randn(1, 4, 3), masks)
    teacher = _output(teacher_logits, torch.ones(1, 3, 2), torch.randn(1, 6, 3), masks)
    terms, total = loss(student, teacher, [torch.zeros(0, 2)], [torch.zeros(0, dtype=torch.long)], 1.0)
    assert terms["kd_reg_loss"].item() == pytest.approx(0.5)  # positions 0 and 2 only
    expected = 2 * terms["kd_cls_loss"] + terms["kd_reg_loss"] + 0.5 * terms["feat_loss"]
    assert total.item() == pytest.approx(expected.item())
    # at ground-truth positives instead: the action [0.5, 1.5] makes point 1 positive
    gt_cfg = build_config({"distill": {"kd_reg_positions": "gt"}}).distill
    gt_loss = TeacherLoss(gt_cfg, 4, 4, 2, center_sample="none")
    terms, _ = gt_loss(student, teacher, [torch.tensor([[0.5, 1.5]])], [torch.tensor([1])], 1.0)
    assert terms["kd_reg_loss"].item() == pytest.approx(4.0)
