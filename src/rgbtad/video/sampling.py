"""Snippet sampling: which frames of the (resampled) video make up each feature vector.

Rule (used by feature extraction and by the detector's time mapping):

- Snippet ``i`` covers frames ``[i * stride, i * stride + snippet_frames)`` of the resampled
  video, for ``i = 0 .. T-1``, with
  ``T = floor((num_frames - snippet_frames) / stride) + 1`` when ``num_frames >= snippet_frames``.
  Frames after the last complete snippet are not used (no partial snippet at the end).
- A video **shorter than one snippet** (``0 < num_frames < snippet_frames``) still gets
  ``T = 1``: its frames followed by copies of its last frame up to ``snippet_frames``.
  A video with no frames has ``T = 0``.
- Snippet ``i`` is centred at ``t_i = (i * stride + 0.5 * snippet_frames) / fps`` seconds,
  which is the feature-to-time mapping of ActionFormer-style detectors (``feat_stride =
  stride``, ``num_frames = snippet_frames``). For a padded short video ``t_0`` can lie past the
  end of the video; the detector clips segments to the video duration.

The same rule is applied to motion streams (optical flow, temporal gradient), which have one
item per pair of consecutive frames: a snippet of ``snippet_frames`` frames has
``snippet_frames - 1`` motion items, sampled with `iter_snippets(motion_chunks,
snippet_frames - 1, stride)` and then padded with `pad_snippet` (last item repeated) back to
``snippet_frames``. Because the motion stream has ``num_frames - 1`` items, this yields exactly
the same ``T`` as the frame stream.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np


def _check(snippet_frames: int, stride: int) -> None:
    if int(snippet_frames) < 1:
        raise ValueError(f"snippet_frames must be >= 1, got {snippet_frames}")
    if int(stride) < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")


def num_snippets(num_frames: int, snippet_frames: int, stride: int) -> int:
    """Number of snippets T of a video with `num_frames` frames (module doc)."""
    _check(snippet_frames, stride)
    if num_frames <= 0:
        return 0
    if num_frames < snippet_frames:
        return 1
    return (num_frames - snippet_frames) // stride + 1


def snippet_starts(num_frames: int, snippet_frames: int, stride: int) -> np.ndarray:
    """First frame index of every snippet."""
    return np.arange(num_snippets(num_frames, snippet_frames, stride), dtype=np.int64) * int(stride)


def snippet_frame_indices(num_frames: int, snippet_frames: int, stride: int) -> np.ndarray:
    """T x snippet_frames array of the frame index used at each position (padding repeats the
    last frame)."""
    starts = snippet_starts(num_frames, snippet_frames, stride)
    idx = starts[:, None] + np.arange(snippet_frames, dtype=np.int64)[None, :]
    return np.minimum(idx, max(num_frames - 1, 0))


def pad_snippet(items: np.ndarray, length: int) -> np.ndarray:
    """`items` (n x ...) extended to `length` by repeating its last item (n >= 1)."""
    n = len(items)
    if n >= length:
        return items
    if n == 0:
        raise ValueError("cannot pad an empty snippet")
    tail = np.repeat(items[-1:], length - n, axis=0)
    return np.concatenate([items, tail], axis=0)


def iter_snippets(chunks: Iterable[np.ndarray], snippet_frames: int, stride: int) -> Iterator[np.ndarray]:
    """Turn a stream of chunks (n x ... arrays along time) into snippets (snippet_frames x ...).

    Follows the module rule, including the single padded snippet of a short stream. Memory is
    bounded: only the items still needed by a coming snippet are kept between chunks (at most
    `snippet_frames - 1` plus one chunk). Yielded arrays may be views: copy or stack them
    before the next one is requested if they must outlive it.
    """
    _check(snippet_frames, stride)
    length, stride = int(snippet_frames), int(stride)
    buf: np.ndarray | None = None
    base = 0          # index, in the stream, of buf[0]
    next_start = 0    # first item of the next snippet
    emitted = 0
    for chunk in chunks:
        if len(chunk) == 0:
            continue
        buf = chunk if buf is None or len(buf) == 0 else np.concatenate([buf, chunk], axis=0)
        while next_start + length <= base + len(buf):
            offset = next_start - base
            yield buf[offset:offset + length]
            emitted += 1
            next_start += stride
        # Forget the items no coming snippet needs (none before the first snippet, so a short
        # stream is still whole at the end, for the pad).
        drop = min(next_start - base, len(buf))
        buf = buf[drop:]
        base += drop
    if emitted == 0 and buf is not None and len(buf) > 0:
        yield pad_snippet(buf, length)
