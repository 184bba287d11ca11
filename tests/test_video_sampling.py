"""Snippet sampling: the snippet-count formula, short videos, and bounded-memory streaming."""

import numpy as np
import pytest

from rgbtad.video.sampling import (
    iter_snippets,
    num_snippets,
    pad_snippet,
    snippet_frame_indices,
    snippet_starts,
)


def test_num_snippets_formula():
    assert num_snippets(32, 8, 4) == 7          # floor((32 - 8) / 4) + 1
    assert num_snippets(164, 16, 4) == 38
    assert num_snippets(16, 16, 4) == 1
    assert num_snippets(19, 16, 4) == 1
    assert num_snippets(20, 16, 4) == 2
    assert num_snippets(5, 16, 4) == 1          # shorter than one snippet: one padded snippet
    assert num_snippets(0, 16, 4) == 0
    assert num_snippets(10, 2, 20) == 1         # stride larger than the snippet
    with pytest.raises(ValueError):
        num_snippets(10, 0, 1)


def test_indices_and_centres():
    assert list(snippet_starts(32, 8, 4)) == [0, 4, 8, 12, 16, 20, 24]
    idx = snippet_frame_indices(5, 8, 4)
    assert idx.tolist() == [[0, 1, 2, 3, 4, 4, 4, 4]]


def _chunks(items, size):
    return [items[i:i + size] for i in range(0, len(items), size)]


@pytest.mark.parametrize("num_frames", [1, 5, 15, 16, 17, 40, 63])
@pytest.mark.parametrize("snippet_frames,stride", [(16, 4), (8, 8), (4, 7), (1, 1)])
@pytest.mark.parametrize("chunk", [1, 3, 16, 100])
def test_streamed_snippets_match_the_index_rule(num_frames, snippet_frames, stride, chunk):
    frames = np.arange(num_frames)[:, None] * np.ones((1, 2), dtype=np.int64)
    got = [s.copy() for s in iter_snippets(_chunks(frames, chunk), snippet_frames, stride)]
    want = frames[snippet_frame_indices(num_frames, snippet_frames, stride)]
    assert len(got) == num_snippets(num_frames, snippet_frames, stride)
    assert np.array_equal(np.stack(got), want)


def test_stream_keeps_only_the_overlap():
    # A consumer sees snippets while the stream is still being produced: memory stays bounded.
    seen_chunks = []

    def chunks():
        for i in range(0, 1000, 10):
            seen_chunks.append(i)
            yield np.arange(i, i + 10)

    first = next(iter_snippets(chunks(), 8, 4))
    assert first.tolist() == list(range(8)) and seen_chunks == [0]


def test_empty_stream_and_pad():
    assert list(iter_snippets([], 4, 2)) == []
    assert pad_snippet(np.array([1, 2]), 4).tolist() == [1, 2, 2, 2]
