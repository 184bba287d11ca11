"""The one per-video detection structure and its two conversions."""

import numpy as np
import pytest

from rgbtad.data.detections import Detection, Detections


def _detections():
    return Detections("v", np.array([[1.0, 2.5], [0.0, 4.0]]), np.array([0.9, 0.2], dtype=np.float32),
                      np.array([1, 0], dtype=np.int64))


def test_named_and_results_layouts():
    dets = _detections()
    assert len(dets) == 2
    assert dets.named(["walk", "run"]) == [Detection("run", pytest.approx(0.9), 1.0, 2.5),
                                           Detection("walk", pytest.approx(0.2), 0.0, 4.0)]
    assert [d.label for d in dets.named(["walk", "run"], min_score=0.5)] == ["run"]
    results = dets.to_results(["walk", "run"])
    assert results[1] == {"label": "walk", "score": pytest.approx(0.2), "segment": [0.0, 4.0]}
    assert all(type(r["score"]) is float and type(r["segment"][0]) is float for r in results)


def test_arrays_of_different_lengths_are_refused():
    with pytest.raises(ValueError, match="v: segments .* do not describe the same N detections"):
        Detections("v", np.zeros((3, 2)), np.zeros(2), np.zeros(2, dtype=np.int64))
