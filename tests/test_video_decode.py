"""Decoding real clips (MP4/H.264 and AVI/MPEG-4): counts, chunking, resampling, resizing, errors."""

import os
import shutil

import numpy as np
import pytest

from rgbtad.core.errors import RgbtadError
from rgbtad.video.decode import (
    VideoReader,
    iter_frames,
    list_videos,
    output_size,
    parse_size,
    probe,
    read_video,
    resample_indices,
)


@pytest.fixture(scope="module")
def mp4(shared_data):
    return shared_data / "videos" / "mmaction2_part_0.mp4"


@pytest.fixture(scope="module")
def avi(shared_data):
    return shared_data / "videos" / "mmaction2_test.avi"


@pytest.fixture(scope="module")
def mp4_frames(mp4):
    return read_video(mp4)


def test_probe_counts_frames_of_both_containers(mp4, avi):
    info = probe(mp4)
    assert (info.num_frames, info.fps, info.width, info.height) == (32, 30.0, 340, 256)
    assert info.duration == pytest.approx(32 / 30)
    info = probe(avi)
    assert (info.num_frames, info.fps, info.width, info.height) == (164, 25.0, 320, 240)
    assert probe(avi, exact=False).num_frames == 164


def test_probe_decodes_when_the_header_count_is_wrong(shared_data):
    # The MP4 header of this clip declares 727 frames; 726 decode.
    path = shared_data / "videos" / "highjump.mp4"
    assert probe(path, exact=False).num_frames == 727
    assert probe(path).num_frames == 726
    assert probe(path).fps == 30.0


def test_frames_are_rgb_uint8(mp4_frames, avi):
    assert mp4_frames.shape == (32, 256, 340, 3) and mp4_frames.dtype == np.uint8
    frames = read_video(avi)
    assert frames.shape == (164, 240, 320, 3)
    assert 0 < frames.mean() < 255


@pytest.mark.parametrize("chunk", [1, 5, 32, 100])
def test_chunked_decoding_equals_whole(mp4, mp4_frames, chunk):
    chunks = list(iter_frames(mp4, chunk=chunk))
    assert all(len(c) <= chunk for c in chunks)
    assert np.array_equal(np.concatenate(chunks), mp4_frames)


def test_chunked_decoding_equals_whole_avi(avi):
    whole = read_video(avi, size=32)
    chunks = list(iter_frames(avi, size=32, chunk=50))
    assert [len(c) for c in chunks] == [50, 50, 50, 14]
    assert np.array_equal(np.concatenate(chunks), whole)


def test_fps_resampling_picks_the_frame_at_or_before(mp4, mp4_frames, avi):
    down = read_video(mp4, fps=10)  # 30 -> 10 fps: every third frame, ceil(32 / 3) = 11
    assert np.array_equal(down, mp4_frames[::3])
    up = read_video(mp4, fps=60)    # each frame twice
    assert np.array_equal(up, np.repeat(mp4_frames, 2, axis=0))
    idx = resample_indices(164, 25, 10)  # 25 -> 10 fps: source floor(k * 2.5)
    assert len(idx) == 66 and list(idx[:5]) == [0, 2, 5, 7, 10] and idx[-1] == 162
    assert np.array_equal(read_video(avi, fps=10, size=32), read_video(avi, size=32)[idx])
    assert np.array_equal(resample_indices(32, 30, None), np.arange(32))


def test_chunked_resampling_equals_whole(avi):
    whole = read_video(avi, fps=12.5, size=24)
    assert len(whole) == 82
    assert np.array_equal(np.concatenate(list(iter_frames(avi, fps=12.5, size=24, chunk=7))), whole)


def test_resize_short_side_and_fixed(mp4):
    assert read_video(mp4, size=64).shape[1:3] == (64, 85)   # 340 x 256 -> 85 x 64
    assert read_video(mp4, size=(40, 30)).shape[1:3] == (30, 40)
    assert output_size(180, 320, 112) == (112, 199)          # portrait
    assert parse_size("224") == 224 and parse_size("64x48") == (64, 48) and parse_size(None) is None
    with pytest.raises(RgbtadError, match="invalid size"):
        parse_size("big")


def test_reader_reports_counts(avi):
    with VideoReader(avi, fps=10, size=32, chunk_frames=16) as reader:
        n = sum(len(c) for c in reader)
    assert n == reader.frames_read == 66 and reader.source_frames_read == 164
    assert (reader.width, reader.height) == (43, 32)


# ----------------------------------------------------------------------------- bad files


def _assert_error(path, pattern):
    for call in (probe, read_video):
        with pytest.raises(RgbtadError, match=pattern) as info:
            call(path)
        assert str(path) in str(info.value)
        assert "\n" not in str(info.value)


def test_random_bytes_named_mp4(tmp_path):
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    _assert_error(path, "not a readable video")


def test_zero_length_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    _assert_error(path, r"not a readable video \(empty file")


def test_missing_file(tmp_path):
    _assert_error(tmp_path / "nope.mp4", "file not found")


def test_truncated_mp4_with_index_at_the_end(tmp_path, mp4):
    # moov atom at the end of this file: the first 30% cannot be opened at all.
    data = mp4.read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: int(0.3 * len(data))])
    _assert_error(path, "not a readable video")


def test_truncated_mp4_with_index_at_the_front(tmp_path, shared_data):
    # moov atom first: the frames present decode, then the stream ends early.
    data = (shared_data / "videos" / "tennis26.mp4").read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: int(0.3 * len(data))])
    _assert_error(path, r"truncated video \(decoded \d+ of 339 frames")
    kept = read_video(path, strict=False, size=16)
    assert 0 < len(kept) < 339


def test_audio_only_file_has_no_video_stream(tmp_path):
    import av

    path = tmp_path / "sound.wav"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    _assert_error(path, "no video stream")


def test_video_with_no_frames(tmp_path, avi):
    data = avi.read_bytes()
    path = tmp_path / "headers_only.avi"
    path.write_bytes(data[: data.find(b"movi") + 4])
    _assert_error(path, "video has no frames")


def test_list_videos_expands_folders(tmp_path, mp4, avi):
    shutil.copy(mp4, tmp_path / "b.mp4")
    shutil.copy(avi, tmp_path / "a.avi")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in list_videos([tmp_path])] == ["a.avi", "b.mp4"]
    with pytest.raises(RgbtadError, match="no such file"):
        list_videos([tmp_path / "missing.mp4"])
    os.mkdir(tmp_path / "sub")
    shutil.copy(mp4, tmp_path / "sub" / "b.avi")
    with pytest.raises(RgbtadError, match="same name"):
        list_videos([tmp_path, tmp_path / "sub" / "b.avi"])
