"""Points of the pyramid and label assignment on hand-made cases."""

import torch

from rgbtad.detection.assignment import assign_batch, assign_targets
from rgbtad.detection.points import level_points, pyramid_strides


def _points(lengths, strides, ranges):
    return torch.cat(level_points(lengths, strides, ranges))


def test_point_generator_strides_and_ranges():
    strides = pyramid_strides(2, 6)
    assert strides == [1, 2, 4, 8, 16, 32]
    ranges = [(0, 4), (4, 8), (8, 16), (16, 32), (32, 64), (64, 10000)]
    pts = level_points([64, 32, 16, 8, 4, 2], strides, ranges)
    assert [p.shape for p in pts] == [torch.Size([n, 4]) for n in (64, 32, 16, 8, 4, 2)]
    assert pts[2][:4, 0].tolist() == [0.0, 4.0, 8.0, 12.0]
    assert pts[5].tolist() == [[0.0, 64.0, 10000.0, 32.0], [32.0, 64.0, 10000.0, 32.0]]
    assert all(p.dtype == torch.float32 for p in pts)
    assert pyramid_strides(2, 6, start_level=2) == [4, 8, 16, 32]


def test_center_sampling_radius():
    pts = _points([16], [1], [(0, 100)])
    cls, reg = assign_targets(pts, torch.tensor([[4.0, 10.0]]), torch.tensor([1]), 3)
    # centre 7, radius 1.5 -> strictly inside (5.5, 8.5)
    assert torch.nonzero(cls[:, 1]).flatten().tolist() == [6, 7, 8]
    assert cls[:, [0, 2]].sum() == 0
    assert reg[6].tolist() == [2.0, 4.0] and reg[8].tolist() == [4.0, 2.0]


def test_no_center_sampling_uses_whole_segment():
    pts = _points([16], [1], [(0, 100)])
    cls, _ = assign_targets(pts, torch.tensor([[4.0, 10.0]]), torch.tensor([0]), 1, center_sample="none")
    assert torch.nonzero(cls[:, 0]).flatten().tolist() == [5, 6, 7, 8, 9]  # strictly inside


def test_regression_range_selects_the_level_and_offsets_are_per_stride():
    pts = _points([16, 8], [1, 2], [(0, 4), (4, 100)])
    cls, reg = assign_targets(pts, torch.tensor([[0.0, 12.0]]), torch.tensor([0]), 1)
    positives = torch.nonzero(cls[:, 0]).flatten().tolist()
    # level 0 (radius 1.5 -> t in 5..7) reaches 6..7 > 4: rejected; level 1 (radius 3 ->
    # t in {4, 6, 8}) reaches 6..8 within [4, 100]
    assert positives == [16 + 2, 16 + 3, 16 + 4]
    assert reg[16 + 2].tolist() == [2.0, 4.0]  # (4 - 0, 12 - 4) / 2
    assert reg[16 + 3].tolist() == [3.0, 3.0]


def test_regression_range_bounds_are_inclusive():
    pts = _points([16], [1], [(0, 4)])
    cls, _ = assign_targets(pts, torch.tensor([[4.0, 12.0]]), torch.tensor([0]), 1, center_sample="none")
    # t = 8: max distance exactly 4 -> inside [0, 4]
    assert torch.nonzero(cls[:, 0]).flatten().tolist() == [8]


def test_shortest_action_wins():
    pts = _points([24], [1], [(0, 100)])
    segs = torch.tensor([[0.0, 20.0], [8.0, 12.0]])
    cls, reg = assign_targets(pts, segs, torch.tensor([0, 1]), 2)
    assert cls[10].tolist() == [0.0, 1.0]
    assert reg[10].tolist() == [2.0, 2.0]


def test_near_equal_lengths_give_multi_hot_targets():
    pts = _points([24], [1], [(0, 100)])
    segs = torch.tensor([[8.0, 12.0], [8.0005, 12.0005], [7.99, 12.0]])
    cls, reg = assign_targets(pts, segs, torch.tensor([0, 2, 1]), 3)
    # lengths 4, 4 (within 1e-3) and 4.01 (not): classes 0 and 2 at the centre point
    assert cls[10].tolist() == [1.0, 0.0, 1.0]
    assert reg[10].tolist() == [2.0, 2.0]
    # the same class twice stays 1
    cls2, _ = assign_targets(pts, torch.tensor([[8.0, 12.0], [8.0, 12.0]]), torch.tensor([1, 1]), 3)
    assert cls2[10].tolist() == [0.0, 1.0, 0.0]


def test_video_without_actions_and_batch_shapes():
    pts = level_points([8, 4], [1, 2], [(0, 4), (4, 100)])
    cls, reg = assign_batch(pts, [torch.zeros(0, 2), torch.tensor([[1.0, 5.0]])],
                            [torch.zeros(0, dtype=torch.long), torch.tensor([0])], 2)
    assert cls.shape == (2, 12, 2) and reg.shape == (2, 12, 2)
    assert cls[0].sum() == 0 and cls[1].sum() > 0
