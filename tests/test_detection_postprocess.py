"""Decoding, grid <-> seconds, soft/hard NMS and voting against slow oracles."""

import numpy as np
import pytest
import torch

from rgbtad.core.timebase import SnippetGrid
from rgbtad.detection.points import level_points
from rgbtad.detection.postprocess import (
    NMSConfig,
    batched_nms,
    clip_to_video,
    decode_video,
    hard_nms_1d,
    postprocess_video,
    segment_voting,
    soft_nms_1d,
)


def _oracle_soft_nms(segs, scores, sigma, min_score):
    """Element-by-element Gaussian soft-NMS with the release kernel's rules: first maximum
    wins, swap to the front, decay later scores one by one, and replace a score below
    min_score by the current last entry (which is then decayed in its place)."""
    f = np.float32
    x1 = [f(v) for v in segs[:, 0]]
    x2 = [f(v) for v in segs[:, 1]]
    sc = [f(v) for v in scores]
    area = [f(b - a) + f(1e-6) for a, b in zip(x1, x2)]
    ind = list(range(len(sc)))
    n = len(sc)
    kept = []
    i = 0
    while i < n:
        best = i
        for pos in range(i + 1, n):
            if sc[best] < sc[pos]:
                best = pos
        for arr in (x1, x2, sc, area, ind):
            arr[i], arr[best] = arr[best], arr[i]
        kept.append((ind[i], x1[i], x2[i], sc[i]))
        pos = i + 1
        while pos < n:
            inter = max(f(0.0), min(x2[i], x2[pos]) - max(x1[i], x1[pos]))
            iou = inter / (area[i] + area[pos] - inter)
            sc[pos] = f(sc[pos] * np.exp(-(iou * iou) / f(sigma)))
            if sc[pos] < f(min_score):
                for arr in (x1, x2, sc, area, ind):
                    arr[pos] = arr[n - 1]
                n -= 1
                continue
            pos += 1
        i += 1
    return kept


def _oracle_hard_nms(segs, scores, thr):
    order = sorted(range(len(scores)), key=lambda k: -scores[k])
    keep = []
    removed = set()
    for a_pos, a in enumerate(order):
        if a in removed:
            continue
        keep.append(a)
        for b in order[a_pos + 1:]:
            if b in removed:
                continue
            inter = max(0.0, min(segs[a, 1], segs[b, 1]) - max(segs[a, 0], segs[b, 0]))
            union = (segs[a, 1] - segs[a, 0] + 1e-6) + (segs[b, 1] - segs[b, 0] + 1e-6) - inter
            if inter / union >= thr:
                removed.add(b)
    return keep


def _random_segments(rng, n, ties=False):
    starts = rng.uniform(0, 50, n).astype(np.float32)
    lengths = rng.uniform(0.5, 15, n).astype(np.float32)
    segs = np.stack([starts, starts + lengths], 1).astype(np.float32)
    scores = rng.uniform(0.0005, 1.0, n).astype(np.float32)
    if ties:
        scores[rng.integers(0, n, n // 3)] = np.float32(0.5)
        segs[: n // 4] = segs[n // 4: 2 * (n // 4)]  # duplicated segments
    return segs, scores


@pytest.mark.parametrize("seed,ties,sigma,min_score", [
    (0, False, 0.5, 0.001), (1, True, 0.5, 0.001), (2, True, 0.75, 0.2), (3, False, 0.1, 0.3),
])
def test_soft_nms_matches_element_wise_oracle(seed, ties, sigma, min_score):
    rng = np.random.default_rng(seed)
    segs, scores = _random_segments(rng, 120, ties)
    index, kept_segs, kept_scores = soft_nms_1d(segs, scores, sigma, min_score)
    expected = _oracle_soft_nms(segs, scores, sigma, min_score)
    assert index.tolist() == [e[0] for e in expected]
    np.testing.assert_array_equal(kept_segs, np.array([[e[1], e[2]] for e in expected], np.float32))
    np.testing.assert_allclose(kept_scores, np.array([e[3] for e in expected], np.float32), rtol=1e-6)
    if min_score >= 0.2:
        assert len(index) < 120  # the discard path was exercised


def test_soft_nms_hand_case():
    segs = np.array([[0, 10], [0, 10], [20, 30], [1, 9]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.95], np.float32)
    index, kept_segs, kept_scores = soft_nms_1d(segs, scores, 0.5, 0.001)
    order = index.tolist()
    # [1, 9] first; [20, 30] does not overlap it and keeps 0.7, which now beats [0, 10]
    # (IoU 0.8 with [1, 9]: 0.9 * exp(-0.64 / 0.5) = 0.25)
    assert order[:3] == [3, 2, 0]
    assert kept_scores[1] == pytest.approx(0.7)
    assert kept_scores[2] == pytest.approx(0.9 * np.exp(-(0.8 ** 2) / 0.5), rel=1e-4)
    # the duplicate [0, 10] decays against [1, 9] and against its twin (IoU 1)
    assert kept_scores[3] == pytest.approx(0.8 * np.exp(-(0.8 ** 2) / 0.5) * np.exp(-1 / 0.5), rel=1e-4)


def test_hard_nms_matches_oracle():
    rng = np.random.default_rng(5)
    segs, scores = _random_segments(rng, 80)
    keep = hard_nms_1d(torch.from_numpy(segs), torch.from_numpy(scores), 0.3)
    assert keep.tolist() == _oracle_hard_nms(segs.astype(np.float64), scores, 0.3)


def test_segment_voting_hand_case():
    nms = torch.tensor([[0.0, 10.0]])
    all_segs = torch.tensor([[0.0, 10.0], [2.0, 10.0], [30.0, 40.0]])
    scores = torch.tensor([0.9, 0.5, 0.8])
    out = segment_voting(nms, all_segs, scores, 0.7)
    # weights score x IoU: 0.9 x 1 and 0.5 x 0.8; [30, 40] has IoU 0
    w0, w1 = 0.9, 0.4
    assert out[0].tolist() == pytest.approx([(w1 * 2.0) / (w0 + w1), 10.0], abs=1e-5)


def test_batched_nms_multiclass_and_agnostic():
    segs = torch.tensor([[0.0, 10.0], [0.0, 10.0], [1.0, 10.0], [50.0, 60.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    labels = torch.tensor([0, 1, 0, 1])
    cfg = NMSConfig(nms_method="soft", multiclass=True, sigma=0.5, min_score=0.001, max_seg_num=3)
    s, sc, lab = batched_nms(segs, scores, labels, cfg)
    assert len(sc) == 3 and torch.all(sc[:-1] >= sc[1:])
    assert sc[0].item() == pytest.approx(0.9) and sc[1].item() == pytest.approx(0.8)  # other classes don't decay
    agn = NMSConfig(nms_method="soft", multiclass=False, sigma=0.5, min_score=0.001, max_seg_num=10,
                    voting_thresh=0.0)
    s2, sc2, lab2 = batched_nms(segs, scores, labels, agn)
    assert sc2[1].item() < 0.8  # class-agnostic: [0, 10] of class 1 decays
    hard = NMSConfig(nms_method="hard", multiclass=False, iou_threshold=0.5, min_score=0.65,
                     max_seg_num=10, voting_thresh=0.0)
    s3, sc3, lab3 = batched_nms(segs, scores, labels, hard)
    assert sc3.tolist() == pytest.approx([0.9])  # 0.6 is below min_score, the rest overlap
    empty = batched_nms(torch.zeros(0, 2), torch.zeros(0), torch.zeros(0, dtype=torch.long), cfg)
    assert empty[0].shape == (0, 2)


def test_grid_to_seconds_and_clipping():
    segs = torch.tensor([[10.0, 20.0], [-5.0, 3.0], [100.0, 400.0]])
    out = clip_to_video(SnippetGrid(stride=4, frames=16, fps=30.0).to_seconds(segs.clone()), duration=12.0)
    assert out[0].tolist() == pytest.approx([(10 * 4 + 8) / 30, (20 * 4 + 8) / 30])
    assert out[1, 0].item() == 0.0 and out[1, 1].item() == pytest.approx((3 * 4 + 8) / 30)
    assert out[2].tolist() == [12.0, 12.0]


def test_decode_threshold_topk_and_duration():
    pts = level_points([4, 2], [1, 2], [(0, 4), (4, 100)])
    logits = [torch.full((4, 2), -10.0), torch.full((2, 2), -10.0)]
    logits[0][1, 0] = 2.0
    logits[0][2, 1] = 1.0
    logits[0][3, 1] = 3.0  # but masked out below
    logits[1][1, 0] = 0.0
    offsets = [torch.ones(4, 2), torch.ones(2, 2)]
    offsets[1][1] = torch.tensor([0.01, 0.01])  # 0.04 grid long: under duration_thresh
    masks = [torch.tensor([True, True, True, False]), torch.ones(2, dtype=torch.bool)]
    cfg = NMSConfig(pre_nms_thresh=0.01, pre_nms_topk=1, duration_thresh=0.05)
    segs, scores, labels = decode_video(logits, offsets, masks, pts, cfg)
    # level 0: two candidates above threshold, top-1 keeps class 0 at t=1; level 1 too short
    assert segs.tolist() == [[0.0, 2.0]] and labels.tolist() == [0]
    assert scores[0].item() == pytest.approx(torch.sigmoid(torch.tensor(2.0)).item())


def test_postprocess_video_sorted_and_capped():
    torch.manual_seed(0)
    pts = level_points([32, 16], [1, 2], [(0, 4), (4, 100)])
    logits = [torch.randn(32, 3), torch.randn(16, 3)]
    offsets = [torch.rand(32, 2) * 3, torch.rand(16, 2) * 3]
    masks = [torch.ones(32, dtype=torch.bool), torch.ones(16, dtype=torch.bool)]
    meta = {"video_id": "v", "fps": 30.0, "duration": 5.0, "feat_stride": 4, "feat_num_frames": 16}
    out = postprocess_video(logits, offsets, masks, pts, meta, NMSConfig(max_seg_num=7))
    assert out.video_id == "v"
    assert out.segments.shape == (7, 2) and out.scores.shape == (7,)
    assert np.all(np.diff(out.scores) <= 0)
    assert np.all(out.segments >= 0) and np.all(out.segments <= 5.0)
    assert out.labels.dtype == np.int64
