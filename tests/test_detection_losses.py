"""Focal and DIoU losses on hand cases, the normaliser EMA, and real learning on one batch."""

import math

import pytest
import torch

from rgbtad.config import build_config
from rgbtad.detection import build_detector
from rgbtad.detection.losses import DetectionLoss, diou_loss_1d, sigmoid_focal_loss
from rgbtad.detection.points import level_points


def test_focal_loss_hand_values():
    # logit 0, target 1: p = 0.5, ce = ln 2, (1 - p_t)^2 = 0.25, alpha_t = 0.25
    assert sigmoid_focal_loss(torch.tensor([0.0]), torch.tensor([1.0])).item() == pytest.approx(
        0.25 * 0.25 * math.log(2), rel=1e-6)
    # logit 2, target 0: p = s(2), ce = -ln(1 - p), (1 - p_t)^2 = p^2, alpha_t = 0.75
    p = 1 / (1 + math.exp(-2))
    expected = 0.75 * p * p * -math.log(1 - p)
    assert sigmoid_focal_loss(torch.tensor([2.0]), torch.tensor([0.0])).item() == pytest.approx(expected, rel=1e-6)
    both = sigmoid_focal_loss(torch.tensor([0.0, 2.0]), torch.tensor([1.0, 0.0]), reduction="sum")
    assert both.item() == pytest.approx(0.25 * 0.25 * math.log(2) + expected, rel=1e-6)


def test_diou_loss_hand_cases():
    cases = [
        ((2.0, 3.0), (2.0, 3.0), 0.0),  # identical
        ((1.0, 1.0), (2.0, 2.0), 0.5),  # same centre, IoU 1/2
        ((0.0, 2.0), (2.0, 0.0), 1.25),  # disjoint: IoU 0, centre gap 2 over enclosing 4
        ((1.0, 3.0), (2.0, 2.0), 1 - 3 / 5 + (1 / 5) ** 2),  # [-1, 3] vs [-2, 2]: inter 3, union 5, gap 1, encl 5
    ]
    for pred, gt, expected in cases:
        got = diou_loss_1d(torch.tensor([pred]), torch.tensor([gt]), reduction="none")
        assert got.item() == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ValueError):
        diou_loss_1d(torch.tensor([[-1.0, 1.0]]), torch.tensor([[1.0, 1.0]]))


def _one_level_inputs():
    pts = level_points([16], [1], [(0, 100)])
    logits = [torch.zeros(1, 16, 2, requires_grad=True)]
    offsets = [torch.ones(1, 16, 2, requires_grad=True)]
    masks = [torch.ones(1, 16, dtype=torch.bool)]
    return pts, logits, offsets, masks


def test_normalizer_ema_updates_only_when_asked_and_is_saved():
    pts, logits, offsets, masks = _one_level_inputs()
    crit = DetectionLoss(2, init_loss_norm=100.0)
    gt = [torch.tensor([[4.0, 10.0]])]  # 3 positives (t = 6, 7, 8)
    crit(logits, offsets, masks, pts, gt, [torch.tensor([1])])
    assert crit.normalizer.item() == pytest.approx(0.9 * 100 + 0.1 * 3)
    crit(logits, offsets, masks, pts, [torch.zeros(0, 2)], [torch.zeros(0, dtype=torch.long)])
    assert crit.normalizer.item() == pytest.approx(0.9 * (0.9 * 100 + 0.3) + 0.1 * 1)  # max(#pos, 1)
    frozen = crit.normalizer.item()
    crit(logits, offsets, masks, pts, gt, [torch.tensor([1])], update_normalizer=False)
    assert crit.normalizer.item() == frozen
    assert "normalizer" in crit.state_dict() and crit.normalizer.dtype == torch.float64
    other = DetectionLoss(2, init_loss_norm=100.0)
    other.load_state_dict(crit.state_dict())
    assert other.normalizer.item() == frozen


def test_loss_values_label_smoothing_and_adaptive_weight():
    pts, logits, offsets, masks = _one_level_inputs()
    gt, labels = [torch.tensor([[4.0, 10.0]])], [torch.tensor([1])]
    crit = DetectionLoss(2, init_loss_norm=10.0, momentum=0.0, label_smoothing=0.1)
    out = crit(logits, offsets, masks, pts, gt, labels)
    # normaliser = 3 positives; every logit 0: focal(0, y) = alpha_t (1 - p_t)^2 ln 2 with p = 0.5
    eps = 0.1
    pos_target = 1 * (1 - eps) + eps / 3
    neg_target = eps / 3

    def f(y):
        return float(sigmoid_focal_loss(torch.tensor([0.0]), torch.tensor([y])))

    expected_cls = (3 * f(pos_target) + (32 - 3) * f(neg_target)) / 3
    assert out["cls_loss"].item() == pytest.approx(expected_cls, rel=1e-5)
    # offsets (1, 1) against (2, 4), (3, 3), (4, 2)
    reg_terms = diou_loss_1d(torch.ones(3, 2), torch.tensor([[2.0, 4.0], [3.0, 3.0], [4.0, 2.0]]))
    assert out["reg_loss"].item() == pytest.approx(reg_terms.item() / 3, rel=1e-5)
    adaptive = DetectionLoss(2, init_loss_norm=10.0, momentum=0.0, loss_weight=-1)
    out2 = adaptive(logits, offsets, masks, pts, gt, labels)
    w = out2["cls_loss"].item() / max(out2["reg_loss"].item(), 0.01)
    assert out2["final_loss"].item() == pytest.approx(out2["cls_loss"].item() + w * out2["reg_loss"].item(), rel=1e-5)
    out2["final_loss"].backward()
    assert logits[0].grad is not None and offsets[0].grad is not None


def _tiny_cfg(**model):
    values = {
        "data": {"input_dim": 8, "max_seq_len": 64},
        "model": {"embd_dim": 32, "fpn_dim": 32, "head_dim": 32, "n_head": 2, "n_mha_win_size": 5,
                  "arch": [2, 1, 3], "regression_range": [[0, 4], [4, 8], [8, 16], [16, 10000]], **model},
        "train": {"init_loss_norm": 10.0, "droppath": 0.0},
    }
    return build_config(values)


def test_overfitting_one_batch_reduces_the_loss():
    torch.manual_seed(0)
    model = build_detector(_tiny_cfg(), 2)
    model.train()
    feats = torch.randn(2, 8, 64)
    masks = torch.ones(2, 64, dtype=torch.bool)
    masks[1, 50:] = False
    gt = [torch.tensor([[5.0, 15.0], [30.0, 50.0]]), torch.tensor([[10.0, 40.0]])]
    labels = [torch.tensor([0, 1]), torch.tensor([1])]
    # the actions' features are recognisable, so the task is learnable
    feats[0, :4, 5:15] += 2.0
    feats[0, 4:, 30:50] += 2.0
    feats[1, 4:, 10:40] += 2.0
    opt = torch.optim.AdamW(model.param_groups(0.0), lr=3e-3)
    history = []
    for _ in range(60):
        opt.zero_grad()
        losses = model.losses(model(feats, masks), gt, labels)
        losses["final_loss"].backward()
        opt.step()
        history.append(losses["final_loss"].item())
    assert history[-1] < 0.35 * history[0], history[::10]
    model.eval()
    # one-frame snippets at 1 fps: step t is centred at t + 0.5 s, so segments come back in
    # seconds = grid + 0.5 (compared with the grid-unit ground truth through `overlap`)
    meta = {"fps": 1.0, "duration": 64.0, "feat_stride": 1, "feat_num_frames": 1}
    with torch.no_grad():
        dets = model.postprocess(model(feats, masks), [dict(meta, video_id="a"), dict(meta, video_id="b")])
    top = dets[0].segments[0]
    assert top[1] - top[0] > 5  # a real segment, not a sliver

    def overlap(seg, ref):
        return min(seg[1], ref[1] + 0.5) - max(seg[0], ref[0] + 0.5)

    # video a: the two best detections are one per action, each with the label of the action it covers
    # (label 0 on [5, 15], label 1 on [30, 50]); a swapped or constant label would fail
    found = {}
    for seg, label in zip(dets[0].segments[:2], dets[0].labels[:2]):
        covered = max(range(2), key=lambda g: overlap(seg, gt[0][g].tolist()))
        assert overlap(seg, gt[0][covered].tolist()) > 0, (seg, gt[0])
        found[covered] = int(label)
    assert found == {0: 0, 1: 1}, (dets[0].segments[:2], dets[0].labels[:2])
    # video b has only label 1 on [10, 40]: its best detection carries label 1 and lies on that action
    assert int(dets[1].labels[0]) == 1
    assert overlap(dets[1].segments[0], [10.0, 40.0]) > 5
