"""Feature extraction end to end on real clips with the tiny TSM backbone (random weights)."""

import json
import shutil

import numpy as np
import pytest
import torch

from rgbtad.backbones import create_backbone
from rgbtad.cli import main
from rgbtad.core.errors import RgbtadError
from rgbtad.features import extract as extract_mod
from rgbtad.features.extract import extract_features
from rgbtad.features.index import load_features_index
from rgbtad.motion.flow import compute_flow, quantize_flow
from rgbtad.motion.storage import write_motion_file
from rgbtad.video.decode import read_video
from rgbtad.video.sampling import num_snippets, snippet_frame_indices
from rgbtad.video.snippets import SnippetSpec

SIZE = 32
SNIPPETS = SnippetSpec(frames=8, stride=4, size=SIZE)
COMMON = dict(batch_size=3, progress=False)


@pytest.fixture(scope="module")
def videos(shared_data):
    return [shared_data / "videos" / "mmaction2_part_0.mp4", shared_data / "videos" / "mmaction2_test.avi"]


def _net(modality):
    torch.manual_seed(0)
    return create_backbone("tsm_tiny", modality)


def _reference(net, clips):
    """clips: T x N x H x W x C float, already normalized -> T x D features."""
    x = torch.from_numpy(np.ascontiguousarray(clips, dtype=np.float32)).permute(0, 4, 1, 2, 3)
    with torch.inference_mode():
        return net(x).numpy()


def _normalize(x, net):
    return (x - np.array(net.input_mean, np.float32)) / np.array(net.input_std, np.float32)


def _motion_index(num_frames, snippet_frames, stride):
    """Motion item used at each position: N-1 items per snippet, the last one repeated."""
    idx = snippet_frame_indices(max(num_frames - 1, 1), snippet_frames - 1, stride)
    return np.concatenate([idx, idx[:, -1:]], axis=1)


def test_rgb_features_shapes_index_and_values(tmp_path, videos):
    net = _net("rgb")
    report = extract_features(videos, tmp_path, backbone=net, snippets=SNIPPETS.with_(modality="rgb"), **COMMON)
    assert [p.name for p in report.done] == [v.name for v in videos] and not report.failed
    index = json.loads((tmp_path / "features.json").read_text())
    assert index["settings"]["backbone"] == "tsm_tiny" and index["settings"]["feature_dim"] == 128
    assert index["settings"]["snippet_frames"] == 8 and index["settings"]["stride"] == 4
    for video, frames, fps in ((videos[0], 32, 30.0), (videos[1], 164, 25.0)):
        entry = index["videos"][video.stem]
        feats = np.load(tmp_path / f"{video.stem}.npy")
        assert feats.dtype == np.float32
        assert feats.shape == (num_snippets(frames, 8, 4), 128) == (entry["num_snippets"], 128)
        assert entry["num_frames"] == frames and entry["fps"] == fps
    frames = read_video(videos[0], size=SIZE).astype(np.float32) / 255
    want = _reference(net, _normalize(frames[snippet_frame_indices(32, 8, 4)], net))
    assert np.allclose(np.load(tmp_path / "mmaction2_part_0.npy"), want, atol=1e-4)

    again = extract_features(videos, tmp_path, backbone=net, snippets=SNIPPETS.with_(modality="rgb"), **COMMON)
    assert len(again.skipped) == 2 and not again.done


def test_resume_after_interruption(tmp_path, videos, monkeypatch):
    net = _net("rgb")
    real_run = extract_mod._Extractor.run

    def interrupted(self, video, *args, **kwargs):
        if video.suffix == ".avi":
            raise KeyboardInterrupt
        return real_run(self, video, *args, **kwargs)

    monkeypatch.setattr(extract_mod._Extractor, "run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        extract_features(videos, tmp_path, backbone=net, snippets=SNIPPETS, **COMMON)
    monkeypatch.setattr(extract_mod._Extractor, "run", real_run)
    assert list(load_features_index(tmp_path)["videos"]) == ["mmaction2_part_0"]
    # What a kill during np.save leaves behind: a hidden, truncated temporary file.
    (tmp_path / ".mmaction2_test.npy.k2j4x9.tmp.npy").write_bytes(b"\x93NUMPY trunc")
    report = extract_features(videos, tmp_path, backbone=net, snippets=SNIPPETS, **COMMON)
    assert [p.name for p in report.skipped] == ["mmaction2_part_0.mp4"]
    assert [p.name for p in report.done] == ["mmaction2_test.avi"]
    assert np.load(tmp_path / "mmaction2_test.npy").shape == (40, 128)
    assert set(load_features_index(tmp_path)["videos"]) == {"mmaction2_part_0", "mmaction2_test"}


def test_shards_cover_all_videos_disjointly(tmp_path, videos):
    src = tmp_path / "videos"
    src.mkdir()
    for name, video in (("a.mp4", videos[0]), ("b.avi", videos[1]), ("c.mp4", videos[0])):
        shutil.copy(video, src / name)
    vids = sorted(src.iterdir())
    out = tmp_path / "feats"
    net = _net("rgb")
    first = extract_features(vids, out, backbone=net, snippets=SNIPPETS, shard="1/2", **COMMON)
    second = extract_features(vids, out, backbone=net, snippets=SNIPPETS, shard=(2, 2), **COMMON)
    names1, names2 = {p.name for p in first.done}, {p.name for p in second.done}
    assert names1 == {"a.mp4", "c.mp4"} and names2 == {"b.avi"}
    assert set(json.loads((out / "features.shard-1-of-2.json").read_text())["videos"]) == {"a", "c"}
    assert set(json.loads((out / "features.shard-2-of-2.json").read_text())["videos"]) == {"b"}
    assert not (out / "features.json").exists()
    assert set(load_features_index(out)["videos"]) == {"a", "b", "c"}
    whole = extract_features(vids, out, backbone=net, snippets=SNIPPETS, **COMMON)   # unsharded: skips all, consolidates
    assert len(whole.skipped) == 3 and not whole.done
    assert set(json.loads((out / "features.json").read_text())["videos"]) == {"a", "b", "c"}


def test_torchrun_rank_picks_the_shard(tmp_path, videos, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    report = extract_features(videos, tmp_path, backbone=_net("rgb"), snippets=SNIPPETS.with_(fps=10), device="cpu", **COMMON)
    assert [p.name for p in report.done] == ["mmaction2_test.avi"]
    entry = json.loads((tmp_path / "features.shard-2-of-2.json").read_text())["videos"]["mmaction2_test"]
    assert (entry["num_frames"], entry["fps"], entry["source_fps"]) == (66, 10.0, 25.0)  # ceil(164 * 10 / 25)
    assert np.load(tmp_path / "mmaction2_test.npy").shape == (num_snippets(66, 8, 4), 128)


def test_video_shorter_than_one_snippet(tmp_path, videos):
    net = _net("rgb")
    extract_features(videos[:1], tmp_path, backbone=net, snippets=SnippetSpec(frames=40, stride=4, size=SIZE), progress=False)
    feats = np.load(tmp_path / "mmaction2_part_0.npy")
    assert feats.shape == (1, 128)
    frames = read_video(videos[0], size=SIZE).astype(np.float32) / 255
    padded = frames[np.minimum(np.arange(40), 31)][None]
    assert np.allclose(feats, _reference(net, _normalize(padded, net)), atol=1e-4)
    flow_out = tmp_path / "flow"
    extract_features(videos[:1], flow_out, backbone=_net("flow"), snippets=SnippetSpec(modality="flow", flow_method="dis", frames=40, stride=4, size=SIZE), progress=False)
    assert np.load(flow_out / "mmaction2_part_0.npy").shape == (1, 128)


def test_flow_features_match_reference_and_stored_flow(tmp_path, videos):
    net = _net("flow")
    video = videos[0]
    extract_features([video], tmp_path / "live", backbone=net, snippets=SNIPPETS.with_(modality="flow", flow_method="dis"), **COMMON)
    live = np.load(tmp_path / "live" / "mmaction2_part_0.npy")
    frames = read_video(video, size=SIZE)
    q = quantize_flow(compute_flow(frames, "dis")).astype(np.float32) / 255
    want = _reference(net, _normalize(q[_motion_index(32, 8, 4)], net))
    assert live.shape == (7, 128) and np.allclose(live, want, atol=1e-4)

    write_motion_file(video, tmp_path / "flows", "dis", size=SIZE)
    extract_features([video], tmp_path / "stored", backbone=net, snippets=SNIPPETS.with_(modality="flow", flow_method="dis"), flow_dir=tmp_path / "flows", **COMMON)
    assert np.array_equal(np.load(tmp_path / "stored" / "mmaction2_part_0.npy"), live)
    with pytest.raises(RgbtadError, match="flow folder not found"):
        extract_features([video], tmp_path / "x", backbone=net, snippets=SNIPPETS.with_(modality="flow"), flow_dir=tmp_path / "none", **COMMON)


def test_tg_features_match_reference(tmp_path, videos):
    net = _net("tg")
    extract_features(videos[:1], tmp_path, backbone=net, snippets=SNIPPETS.with_(modality="tg"), **COMMON)
    frames = read_video(videos[0], size=SIZE).astype(np.float32) / 255
    tg = (frames[1:] - frames[:-1]) / np.array(net.input_std, np.float32)
    want = _reference(net, tg[_motion_index(32, 8, 4)])
    assert np.allclose(np.load(tmp_path / "mmaction2_part_0.npy"), want, atol=1e-4)


def test_bf16_runs_close_to_fp32(tmp_path, videos):
    net = _net("rgb")
    extract_features(videos[:1], tmp_path / "fp32", backbone=net, snippets=SNIPPETS, precision="fp32", **COMMON)
    extract_features(videos[:1], tmp_path / "bf16", backbone=net, snippets=SNIPPETS, precision="bf16", **COMMON)
    a, b = np.load(tmp_path / "fp32" / "mmaction2_part_0.npy"), np.load(tmp_path / "bf16" / "mmaction2_part_0.npy")
    assert b.dtype == np.float32 and a.shape == b.shape
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.95
    assert json.loads((tmp_path / "bf16" / "features.json").read_text())["settings"]["precision"] == "bf16"


def test_other_settings_in_the_same_folder_are_refused(tmp_path, videos):
    net = _net("rgb")
    extract_features(videos[:1], tmp_path, backbone=net, snippets=SNIPPETS, **COMMON)
    with pytest.raises(RgbtadError, match="features.json.*other settings.*stride"):
        extract_features(videos[:1], tmp_path, backbone=net, snippets=SNIPPETS.with_(stride=2), **COMMON)
    with pytest.raises(RgbtadError, match="motion modalities need at least 2"):
        extract_features(videos[:1], tmp_path, backbone=net, snippets=SnippetSpec(modality="tg", frames=1, stride=1))


def test_cli_extract_lists_failures_and_completes_the_others(tmp_path, videos, capsys):
    bad = tmp_path / "in" / "corrupt.mp4"
    bad.parent.mkdir()
    bad.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    shutil.copy(videos[0], tmp_path / "in" / "clip.mp4")
    out = tmp_path / "feats"
    argv = ["extract", "--backbone", "tsm_tiny", "--modality", "rgb", "--snippet-frames", "8", "--stride", "4",
            "--size", str(SIZE), str(tmp_path / "in"), "--out", str(out)]
    code = main(argv)
    captured = capsys.readouterr()
    assert code != 0
    assert "corrupt.mp4: not a readable video" in captured.out and "1 of 2 videos failed" in captured.err
    assert np.load(out / "clip.npy").shape == (7, 128)
    assert list(json.loads((out / "features.json").read_text())["videos"]) == ["clip"]
    assert sorted(p.name for p in out.iterdir()) == ["clip.npy", "features.json"]


def test_index_and_motion_sidecar_with_a_duplicate_key_are_refused(tmp_path):
    """Files rgbtad wrote are read as strictly as the user's: a duplicate key (a hand edit, a
    merge) is one error naming the file, not a silent last-one-wins."""
    from rgbtad.features.index import load_features_index
    from rgbtad.motion.storage import read_motion_meta

    (tmp_path / "features.json").write_text('{"format": "rgbtad-features-1", "settings": {}, '
                                            '"videos": {}, "videos": {}}')
    with pytest.raises(RgbtadError, match=r"features.json: duplicate key 'videos'"):
        load_features_index(tmp_path)
    (tmp_path / "a.flow.json").write_text('{"method": "dis", "method": "tvl1"}')
    with pytest.raises(RgbtadError, match=r"a.flow.json: duplicate key 'method'"):
        read_motion_meta(tmp_path / "a.flow.npz")
