"""Optical flow direction and magnitude, quantization, temporal gradient, motion files and `rgbtad motion`."""

import json

import numpy as np
import pytest

from rgbtad.cli import main
from rgbtad.motion.flow import (
    compute_flow,
    dequantize_flow,
    motion_chunks,
    quantize_flow,
    temporal_gradient,
)
from rgbtad.motion.storage import compute_motion, iter_motion_file, read_motion_meta, write_motion_file
from rgbtad.video.decode import read_video
from rgbtad.video.snippets import normalize


def _texture(size=160, seed=0):
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (size // 3, size // 3)).astype(np.float32)
    smooth = cv2.resize(cv2.GaussianBlur(noise, (0, 0), 1.5), (size, size), interpolation=cv2.INTER_CUBIC)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min()) * 255
    return smooth.astype(np.uint8)


def _pair(dx, dy, size=64):
    """Two RGB frames: a textured image, then the same content moved by (dx, dy) pixels."""
    big = _texture(size + 32)
    first = big[16:16 + size, 16:16 + size]
    second = big[16 - dy:16 - dy + size, 16 - dx:16 - dx + size]
    return np.stack([np.repeat(first[..., None], 3, -1), np.repeat(second[..., None], 3, -1)])


@pytest.mark.parametrize("method,preset", [("tvl1", "fast"), ("dis", "ultrafast"), ("dis", "fast"),
                                           ("dis", "medium"), ("farneback", "fast")])
@pytest.mark.parametrize("dx,dy", [(2, 0), (0, 2)])
def test_flow_points_the_way_the_pattern_moves(method, preset, dx, dy):
    frames = _pair(dx, dy)
    flow = compute_flow(frames, method, dis_preset=preset)
    assert flow.shape == (1, 64, 64, 2) and flow.dtype == np.float32
    inner = flow[0, 12:-12, 12:-12]
    mx, my = np.median(inner[..., 0]), np.median(inner[..., 1])
    assert mx == pytest.approx(dx, abs=0.35)
    assert my == pytest.approx(dy, abs=0.35)


def test_flow_of_n_frames_has_n_minus_1_items():
    frames = np.concatenate([_pair(1, 0), _pair(1, 0)[1:]])
    assert compute_flow(frames, "dis").shape == (2, 64, 64, 2)
    assert compute_flow(frames[:1], "dis").shape == (0, 64, 64, 2)
    with pytest.raises(ValueError, match="unknown flow method"):
        compute_flow(frames, "raft")


def test_quantize_round_trip():
    flow = np.linspace(-25, 25, 1001, dtype=np.float32)
    q = quantize_flow(flow, bound=20)
    assert q.dtype == np.uint8 and q.min() == 0 and q.max() == 255
    back = dequantize_flow(q, bound=20)
    inside = np.abs(flow) <= 20
    assert np.max(np.abs(back[inside] - flow[inside])) <= 20 / 255 + 1e-5
    assert np.all(back[flow > 20] == 20) and np.all(back[flow < -20] == -20)
    assert quantize_flow(np.zeros(1), 20)[0] == 128
    assert np.array_equal(quantize_flow(dequantize_flow(q, 20), 20), q)   # idempotent on the grid


def test_temporal_gradient_of_a_static_video_is_zero(shared_data):
    frame = read_video(shared_data / "videos" / "mmaction2_part_0.mp4", size=32)[:1]
    still = np.repeat(frame, 5, axis=0)
    tg = temporal_gradient(still, std=(0.229, 0.224, 0.225))
    assert tg.shape == (4,) + frame.shape[1:] and not tg.any()


def test_temporal_gradient_scale():
    frames = np.zeros((2, 2, 2, 3), np.uint8)
    frames[1] = 51
    assert np.allclose(temporal_gradient(frames), 0.2)                       # on [0, 1] pixels
    assert np.allclose(temporal_gradient(frames, std=(0.5, 0.25, 0.2)), [0.4, 0.8, 1.0])  # normalized


def test_motion_stream_equals_whole(shared_data):
    frames = read_video(shared_data / "videos" / "mmaction2_test.avi", size=32)[:40]
    chunks = [frames[i:i + 7] for i in range(0, 40, 7)]
    flow = np.concatenate(list(motion_chunks(chunks, "dis")))
    assert np.array_equal(flow, quantize_flow(compute_flow(frames, "dis")))
    tg = np.concatenate(list(motion_chunks(chunks, "tg")))
    assert tg.dtype == np.int16 and np.allclose(normalize(tg, "tg", None, np.ones(3, np.float32)), temporal_gradient(frames))
    one = list(motion_chunks([frames[:1]], "dis"))
    assert len(one) == 1 and one[0].shape == (1, 32, 43, 2) and np.all(one[0] == 128)


def test_motion_file_round_trip(tmp_path, shared_data):
    video = shared_data / "videos" / "mmaction2_part_0.mp4"
    path = write_motion_file(video, tmp_path, "dis", size=32, fps=15)
    assert path.name == "mmaction2_part_0.flow.npz"
    stored = np.load(path)["flow"]
    frames = read_video(video, size=32, fps=15)
    assert stored.shape == (15, 32, 42, 2) and stored.dtype == np.uint8
    assert np.array_equal(stored, quantize_flow(compute_flow(frames, "dis")))
    assert np.array_equal(np.concatenate(list(iter_motion_file(path, chunk=4))), stored)
    meta = read_motion_meta(path)
    assert meta["method"] == "dis" and meta["bound"] == 20 and meta["num_frames"] == 16 and meta["fps"] == 15
    tg_path = write_motion_file(video, tmp_path, "tg", size=32)
    tg = np.load(tg_path)["tg"]
    assert tg.shape == (31, 32, 42, 3)
    diff = read_video(video, size=32).astype(np.int16)
    assert np.abs(dequantize_flow(tg, 255) - (diff[1:] - diff[:-1])).max() <= 1.0 + 1e-4


def test_compute_motion_batch_lists_failures_and_skips(tmp_path, shared_data):
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(b"\x00garbage" * 500)
    videos = [shared_data / "videos" / "mmaction2_part_0.mp4", bad, shared_data / "videos" / "mmaction2_test.avi"]
    out = tmp_path / "flow"
    report = compute_motion(videos, out, method="farneback", size=24, workers=2, progress=False)
    assert [p.name for p in report.done] == ["mmaction2_part_0.mp4", "mmaction2_test.avi"]
    assert len(report.failed) == 1 and str(bad) in report.failed[0][1]
    assert (out / "mmaction2_test.flow.npz").is_file() and not list(out.glob("corrupt*"))
    again = compute_motion(videos, out, method="farneback", size=24, progress=False)
    assert len(again.skipped) == 2 and not again.done
    other = compute_motion(videos[:1], out, method="farneback", size=32, progress=False)
    assert "other settings" in other.failed[0][1]


def test_motion_cli(tmp_path, shared_data, capsys):
    bad = tmp_path / "empty.mp4"
    bad.write_bytes(b"")
    out = tmp_path / "tg"
    code = main(["motion", str(shared_data / "videos" / "mmaction2_part_0.mp4"), str(bad),
                 "--method", "tg", "--size", "24", "--out", str(out)])
    captured = capsys.readouterr()
    assert code != 0 and "empty.mp4" in captured.out and "1 of 2 videos failed" in captured.err
    meta = json.loads((out / "mmaction2_part_0.tg.json").read_text())
    assert meta["method"] == "tg" and meta["num_items"] == 31
