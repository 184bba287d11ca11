"""`rgbtad detect` and the `Detector` API on real clips: a tiny run directory (random detector,
tiny TSM backbone) built from features that `rgbtad extract` wrote."""

import csv
import json
import shutil

import numpy as np
import pytest
import torch

from rgbtad.cli import main
from rgbtad.config import build_config
from rgbtad.core.errors import RgbtadError
from rgbtad.detection import build_detector
from rgbtad.features.extract import extract_features
from rgbtad.inference.detect import Detection, Detector, VideoDetections
from rgbtad.runs.run_dir import attach_backbone, load_backbone_spec, save_run
from rgbtad.video.snippets import SnippetSpec

CLASSES = ["jump", "run", "throw"]
SIZE = 32
SNIPPET, STRIDE = 8, 4


def tiny_config(features_dir, input_dim=128):
    return build_config({
        "data": {"features": str(features_dir), "input_dim": input_dim, "feat_stride": STRIDE,
                 "num_frames": SNIPPET, "max_seq_len": 32},
        "model": {"arch": [1, 1, 2], "embd_dim": 16, "fpn_dim": 16, "head_dim": 16, "n_head": 2,
                  "n_mha_win_size": 5, "regression_range": [[0, 4], [4, 8], [8, 10000]]},
        # a random detector scores about 0.01 everywhere: keep its detections
        "test": {"pre_nms_thresh": 0.0001, "min_score": 0.0001},
    })


def make_run(run_dir, features_dir, seed=0):
    cfg = tiny_config(features_dir)
    torch.manual_seed(seed)
    model = build_detector(cfg, len(CLASSES))
    save_run(run_dir, cfg, CLASSES, model.state_dict())
    return cfg


@pytest.fixture(scope="module")
def clips(shared_data):
    videos = shared_data / "videos"
    return [videos / "mmaction2_part_0.mp4", videos / "mmaction2_test.avi"]


@pytest.fixture(scope="module")
def features_dir(tmp_path_factory, clips):
    out = tmp_path_factory.mktemp("features")
    report = extract_features(clips, out, backbone="tsm_tiny", snippets=SnippetSpec(frames=SNIPPET, stride=STRIDE, fps=10, size=SIZE), batch_size=4, progress=False)
    assert report.ok, report.summary()
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, features_dir):
    run = tmp_path_factory.mktemp("run")
    make_run(run, features_dir)
    assert attach_backbone(run, features_dir)
    return run


def test_attach_backbone_records_the_extraction_settings(run_dir, features_dir):
    spec = json.loads((run_dir / "backbone.json").read_text())
    assert spec["backbone"] == "tsm_tiny" and spec["modality"] == "rgb"
    assert (spec["snippet_frames"], spec["stride"], spec["fps"], spec["size"]) == (SNIPPET, STRIDE, 10.0, SIZE)
    assert spec["weights"] is None and not (run_dir / "backbone.pt").exists()  # seeded random init
    assert len(spec["input_mean"]) == 3 and spec["feature_dim"] == 128
    loaded = load_backbone_spec(run_dir)
    assert loaded["size"] == SIZE and loaded["weights"] is None


def test_attach_backbone_copies_weights_and_skips_other_modalities(tmp_path, clips, features_dir):
    from rgbtad.backbones import create_backbone

    torch.manual_seed(3)
    weights = tmp_path / "rgb.pt"
    torch.save(create_backbone("tsm_tiny", "rgb").state_dict(), weights)
    feats = tmp_path / "feats"
    extract_features(clips[:1], feats, backbone="tsm_tiny", weights=str(weights), snippets=SnippetSpec(frames=SNIPPET, stride=STRIDE, fps=10, size=SIZE), progress=False)
    run = tmp_path / "run"
    make_run(run, feats)
    assert attach_backbone(run, feats)
    assert json.loads((run / "backbone.json").read_text())["weights"] == "backbone.pt"
    assert (run / "backbone.pt").read_bytes() == weights.read_bytes()
    # the weights travel with the run: features computed by detect equal the extracted ones
    weights.unlink()
    feats_detect, _ = Detector.from_run(run).features(clips[0])
    np.testing.assert_allclose(feats_detect, np.load(feats / f"{clips[0].stem}.npy"), rtol=0, atol=1e-5)

    tg = tmp_path / "tg"
    extract_features(clips[:1], tg, backbone="tsm_tiny", snippets=SnippetSpec(modality="tg", frames=SNIPPET, stride=STRIDE, fps=10, size=SIZE), progress=False)
    other = tmp_path / "other"
    make_run(other, tg)
    assert not attach_backbone(other, tg) and not (other / "backbone.json").exists()
    assert not attach_backbone(other, tmp_path / "no_such_folder")


def test_run_without_backbone_settings_is_a_clear_error(tmp_path, features_dir, clips, capsys):
    make_run(tmp_path / "bare", features_dir)
    with pytest.raises(RgbtadError, match="no backbone settings"):
        Detector.from_run(tmp_path / "bare")
    assert main(["detect", str(tmp_path / "bare"), str(clips[0]), "--out", str(tmp_path / "d.json")]) == 2
    assert "no backbone settings" in capsys.readouterr().err


def test_detect_features_equal_extract_features(run_dir, features_dir, clips):
    detector = Detector.from_run(run_dir)
    for clip in clips:
        feats, entry = detector.features(clip)
        np.testing.assert_array_equal(feats, np.load(features_dir / f"{clip.stem}.npy"))
        listed = json.loads((features_dir / "features.json").read_text())["videos"][clip.stem]
        assert entry["num_frames"] == listed["num_frames"] and entry["fps"] == listed["fps"]


def test_detect_api_matches_infer_on_the_same_features(run_dir, features_dir, clips, tmp_path):
    """Detections from the video equal `rgbtad infer` on the extracted features."""
    from rgbtad.inference.predict import infer_features

    index = json.loads((features_dir / "features.json").read_text())["videos"]
    ann = {"database": {stem: {"subset": "test", "duration": e["duration"], "fps": e["fps"], "annotations": []}
                        for stem, e in index.items()}}
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    infer_features(run_dir, features_dir=features_dir, annotations=tmp_path / "ann.json", split="test",
                   out_path=tmp_path / "infer.json")
    expected = json.loads((tmp_path / "infer.json").read_text())["results"]

    detector = Detector.from_run(run_dir)
    for clip in clips:
        result = detector.detect(clip)
        assert isinstance(result, VideoDetections) and result.video_id == clip.stem
        assert result.duration == pytest.approx(index[clip.stem]["duration"])
        assert result.segments and all(isinstance(d, Detection) for d in result.segments)
        assert all(0.0 <= d.start <= d.end <= result.duration for d in result.segments)
        scores = [d.score for d in result.segments]
        assert scores == sorted(scores, reverse=True)
        assert result.to_results() == expected[clip.stem]
        strong = detector.detect(clip, min_score=scores[len(scores) // 2])
        assert 0 < len(strong.segments) < len(scores)


def test_detect_cli_batch_with_a_corrupt_file(run_dir, clips, tmp_path, capsys):
    batch = tmp_path / "batch"
    batch.mkdir()
    for clip in clips:
        shutil.copy(clip, batch / clip.name)
    data = clips[0].read_bytes()
    (batch / "broken.mp4").write_bytes(data[: len(data) // 3])  # moov at the end: unreadable
    (batch / "notes.mp4").write_text("not a video")
    out, csv_path, plots = tmp_path / "dets.json", tmp_path / "dets.csv", tmp_path / "plots"
    code = main(["detect", str(run_dir), str(batch), "--out", str(out), "--csv", str(csv_path),
                 "--plot", str(plots), "--quiet"])
    captured = capsys.readouterr()
    assert code == 2
    assert "2 of 4 videos failed" in captured.err
    assert "broken.mp4" in captured.out and "notes.mp4" in captured.out  # the failures, one line each
    results = json.loads(out.read_text())
    assert set(results["results"]) == {clip.stem for clip in clips}
    for dets in results["results"].values():
        for det in dets:
            assert det["label"] in CLASSES and 0.0 <= det["segment"][0] <= det["segment"][1]
    with open(csv_path, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["video_id", "start", "end", "label", "score"]
    assert len(rows) - 1 == sum(len(d) for d in results["results"].values())
    for clip in clips:
        png = plots / f"{clip.stem}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (plots / "broken.png").exists()


def test_detect_never_computes_optical_flow(run_dir, clips, monkeypatch, tmp_path):
    """Every optical flow (TV-L1, DIS, Farneback), wherever in the library it is asked for and
    under whatever import name, ends in OpenCV's estimators: forbid those, and detect still runs."""
    import cv2
    import numpy as np

    from rgbtad.motion.flow import motion_chunks

    def forbidden(*args, **kwargs):
        raise AssertionError("optical flow computed during detection")

    monkeypatch.setattr(cv2.optflow, "DualTVL1OpticalFlow_create", forbidden)
    monkeypatch.setattr(cv2, "DISOpticalFlow_create", forbidden)
    monkeypatch.setattr(cv2, "calcOpticalFlowFarneback", forbidden)
    # the guard is not vacuous: the library's flow of every method now fails
    frames = np.zeros((2, 16, 16, 3), np.uint8)
    for method in ("tvl1", "dis", "farneback"):
        with pytest.raises(AssertionError, match="optical flow computed"):
            list(motion_chunks(iter([frames]), method))
    assert main(["detect", str(run_dir), *map(str, clips), "--out", str(tmp_path / "d.json"), "--quiet"]) == 0
    assert len(json.loads((tmp_path / "d.json").read_text())["results"]) == 2


def test_backbone_json_written_by_hand(run_dir, tmp_path, clips):
    """A hand-written backbone.json: only the required keys, native size rejected by a wrong dim."""
    run = tmp_path / "hand"
    shutil.copytree(run_dir, run)
    (run / "backbone.json").write_text(json.dumps({"backbone": "tsm_tiny", "snippet_frames": SNIPPET,
                                                   "stride": STRIDE, "fps": 10, "size": SIZE}))
    result = Detector.from_run(run).detect(clips[0])
    assert result.segments
    (run / "backbone.json").write_text(json.dumps({"backbone": "tsm_r18", "snippet_frames": SNIPPET,
                                                   "stride": STRIDE}))
    with pytest.raises(RgbtadError, match="512-d features.*expects 128"):
        Detector.from_run(run)
    (run / "backbone.json").write_text(json.dumps({"backbone": "tsm_tiny", "snippet_frames": 16,
                                                   "stride": STRIDE}))
    with pytest.raises(RgbtadError, match="16 frames every 4"):
        Detector.from_run(run)
    (run / "backbone.json").write_text(json.dumps({"backbone": "tsm_tiny", "stride": STRIDE}))
    with pytest.raises(RgbtadError, match="backbone.json: 'snippet_frames' must be a positive integer"):
        Detector.from_run(run)
    (run / "backbone.json").write_text(json.dumps({"backbone": "tsm_tiny", "snippet_frames": SNIPPET,
                                                   "stride": STRIDE, "weights": "missing.pt"}))
    with pytest.raises(RgbtadError, match="missing.pt not found"):
        Detector.from_run(run)


def test_train_attaches_the_backbone_and_detect_runs(features_dir, clips, tmp_path):
    """`rgbtad train` on features from `rgbtad extract` leaves a run that `detect` can use."""
    from rgbtad.training.trainer import train

    index = json.loads((features_dir / "features.json").read_text())["videos"]
    ann = {"database": {stem: {"subset": "train", "duration": e["duration"], "fps": e["fps"],
                               "annotations": [{"label": CLASSES[i], "label_id": i,
                                                "segment": [0.2 * e["duration"], 0.7 * e["duration"]]}]}
                        for i, (stem, e) in enumerate(sorted(index.items()))}}
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    cfg = tiny_config(features_dir)
    cfg.data.annotations = str(tmp_path / "ann.json")
    cfg.data.train_split = cfg.data.val_split = "train"
    cfg.train.epochs, cfg.train.warmup_epochs, cfg.train.batch_size = 1, 0, 1
    cfg.model.num_classes = 0
    train(cfg, tmp_path / "run", device="cpu")
    assert json.loads((tmp_path / "run" / "backbone.json").read_text())["backbone"] == "tsm_tiny"
    result = Detector.from_run(tmp_path / "run").detect(clips[1])
    # detections come back (the config keeps even a barely trained detector's), named with the
    # classes the run was trained on (the two of the annotations, not the third of CLASSES),
    # best first and inside the video
    assert result.segments
    trained = {a["label"] for v in ann["database"].values() for a in v["annotations"]}
    assert len(trained) == 2 and {d.label for d in result.segments} <= trained
    scores = [d.score for d in result.segments]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= d.start <= d.end <= result.duration + 1e-6 for d in result.segments)
