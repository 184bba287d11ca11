"""ONNX export of a run (detector, and the backbone) and `rgbtad detect --onnx`: ONNX Runtime
agrees with PyTorch within 1e-4 and gives the same detections."""

import json

import numpy as np
import onnx
import pytest
import torch

from rgbtad.cli import main
from rgbtad.config import build_config
from rgbtad.core.errors import RgbtadError
from rgbtad.data.batching import pad_batch
from rgbtad.detection import build_detector
from rgbtad.detection.attention import local_attention_mode
from rgbtad.export.detector import export_detector
from rgbtad.export.onnx import export_run
from rgbtad.export.quantize import calibration_batches
from rgbtad.export.runtime import OrtDetector
from rgbtad.features.extract import extract_features
from rgbtad.inference.detect import Detector
from rgbtad.runs.run_dir import attach_backbone
from rgbtad.video.snippets import SnippetSpec
from test_detect import SIZE, SNIPPET, STRIDE, make_run


@pytest.fixture(scope="module")
def clip(shared_data):
    return shared_data / "videos" / "mmaction2_test.avi"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, clip):
    feats = tmp_path_factory.mktemp("features")
    assert extract_features([clip], feats, backbone="tsm_tiny", snippets=SnippetSpec(frames=SNIPPET, stride=STRIDE, fps=10, size=SIZE), batch_size=4, progress=False).ok
    run = tmp_path_factory.mktemp("run")
    make_run(run, feats, seed=1)
    assert attach_backbone(run, feats)
    return run


def _outputs(out):
    return list(out.cls_logits) + list(out.offsets) + [m.float() for m in out.masks]


@pytest.mark.parametrize("rel_pe", [False, True])
def test_export_friendly_attention_equals_the_model(rel_pe):
    cfg = build_config({"data": {"input_dim": 12, "max_seq_len": 32},
                        "model": {"arch": [1, 1, 2], "embd_dim": 16, "fpn_dim": 16, "head_dim": 16, "n_head": 2,
                                  "n_mha_win_size": 5, "use_rel_pe": rel_pe,
                                  "regression_range": [[0, 4], [4, 8], [8, 10000]]}})
    torch.manual_seed(0)
    model = build_detector(cfg, 4).eval()
    feats, masks = pad_batch([torch.randn(12, 50)], max_seq_len=32, max_div_factor=model.max_div_factor,
                             training=False)
    with torch.no_grad():
        expected = _outputs(model(feats, masks))
        with local_attention_mode(model, "shifted"):
            got = _outputs(model(feats, masks))
        again = _outputs(model(feats, masks))  # the chunked mode is back
    for a, b, c in zip(expected, got, again):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-5)
        assert torch.equal(a, c)


def test_onnx_round_trip_detector_and_backbone(run_dir, clip, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    assert main(["export", str(run_dir), str(out), "--with-backbone"]) == 0
    printed = capsys.readouterr().out
    assert "model.onnx" in printed and "model.backbone.onnx" in printed
    assert (tmp_path / "model.backbone.onnx").is_file()

    torch_detector = Detector.from_run(run_dir)
    onnx_detector = Detector.from_run(run_dir, onnx=out)
    assert isinstance(onnx_detector.forward, OrtDetector)
    # backbone graph: same features within 1e-4
    feats_torch, entry = torch_detector.features(clip)
    feats_onnx, _ = onnx_detector.features(clip)
    assert np.abs(feats_onnx - feats_torch).max() <= 1e-4
    # detector graph on the same features: raw outputs within 1e-4 at several lengths ...
    model = torch_detector.model
    for length in (10, feats_torch.shape[0], 3 * feats_torch.shape[0]):
        x = torch.from_numpy(np.resize(feats_torch, (length, feats_torch.shape[1])).T.copy())
        f, m = pad_batch([x], max_seq_len=32, max_div_factor=model.max_div_factor, training=False)
        with torch.no_grad():
            expected = model(f, m)
        got = onnx_detector.forward(f, m)
        for a, b in zip(_outputs(got), _outputs(expected)):
            assert a.shape == b.shape and float((a - b).abs().max()) <= 1e-4
        for a, b in zip(got.points, expected.points):
            assert torch.equal(a, b)
    # ... and identical detections
    kwargs = dict(video_id=clip.stem, fps=entry["fps"], duration=entry["duration"])
    dets_torch = torch_detector.detect_features(feats_torch, **kwargs).to_results()
    dets_onnx = onnx_detector.detect_features(feats_torch, **kwargs).to_results()
    assert len(dets_torch) > 0 and len(dets_onnx) == len(dets_torch)
    for a, b in zip(dets_onnx, dets_torch):
        assert a["label"] == b["label"]
        assert a["score"] == pytest.approx(b["score"], abs=1e-5)
        assert a["segment"] == pytest.approx(b["segment"], abs=1e-4)

    # the command line
    assert main(["detect", str(run_dir), str(clip), "--onnx", str(out), "--out", str(tmp_path / "d.json"),
                 "--quiet"]) == 0
    assert json.loads((tmp_path / "d.json").read_text())["results"][clip.stem]


def test_int8_backbone_is_close_to_float32_and_runs_in_detect(run_dir, clip, tmp_path, capsys):
    out = tmp_path / "model.onnx"
    assert main(["export", str(run_dir), str(out), "--with-backbone", "--int8-calibration", str(clip),
                 "--calibration-snippets", "8"]) == 0
    assert "int8; features" in capsys.readouterr().out
    int8 = Detector.from_run(run_dir, onnx=out)
    meta = json.loads(int8.backbone.session.get_modelmeta().custom_metadata_map["rgbtad"])
    assert meta["quantization"]["calibration_snippets"] == 8
    assert any(node.op_type in ("QLinearConv", "DequantizeLinear")
               for node in onnx.load(str(tmp_path / "model.backbone.onnx")).graph.node)
    # every snippet of the clip (most of them not calibrated on): features within a few percent
    feats_torch, _ = Detector.from_run(run_dir).features(clip)
    feats_int8, _ = int8.features(clip)
    relative = np.linalg.norm(feats_int8 - feats_torch) / np.linalg.norm(feats_torch)
    assert 0 < relative < 0.05
    assert abs(relative - meta["quantization"]["feature_relative_error"]) < 0.05
    assert main(["detect", str(run_dir), str(clip), "--onnx", str(out), "--out", str(tmp_path / "d.json"),
                 "--quiet"]) == 0
    assert json.loads((tmp_path / "d.json").read_text())["results"][clip.stem]

    with pytest.raises(RgbtadError, match="add --with-backbone"):
        export_run(run_dir, tmp_path / "x.onnx", int8_calibration=[clip])
    with pytest.raises(RgbtadError, match="calibration video not found"):
        export_run(run_dir, tmp_path / "x.onnx", with_backbone=True, int8_calibration=[tmp_path / "none.mp4"])
    assert not (tmp_path / "x.onnx").exists()


def test_calibration_batches_spread_evenly_over_a_stream_of_unknown_length():
    batches = [np.full((2, 1), i) for i in range(40)]
    kept = calibration_batches(iter(batches), limit=10)
    assert [int(b[0, 0]) for b in kept] == [0, 8, 16, 24, 32]
    assert len(calibration_batches(iter(batches[:3]), limit=10)) == 3


def test_export_without_backbone_and_errors(run_dir, clip, tmp_path):
    result = export_run(run_dir, tmp_path / "det.onnx")
    assert result.backbone is None and result.max_abs_diff <= 1e-4
    detector = Detector.from_run(run_dir, onnx=tmp_path / "det.onnx")
    assert not hasattr(detector.backbone, "session")  # PyTorch backbone, ONNX detector
    assert detector.detect(clip).segments

    with pytest.raises(RgbtadError, match="must end in .onnx"):
        export_run(run_dir, tmp_path / "det.bin")
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(RgbtadError, match="junk.onnx: not a loadable ONNX model"):
        Detector.from_run(run_dir, onnx=tmp_path / "junk.onnx")
    # a graph exported from another detector does not fit the run
    cfg = build_config({"data": {"input_dim": 12, "max_seq_len": 32},
                        "model": {"arch": [1, 1, 2], "embd_dim": 16, "fpn_dim": 16, "head_dim": 16, "n_head": 2,
                                  "n_mha_win_size": 5, "regression_range": [[0, 4], [4, 8], [8, 10000]]}})
    other = build_detector(cfg, 2).eval()
    export_detector(other, tmp_path / "other.onnx", input_dim=12, num_classes=2, length=32)
    with pytest.raises(RgbtadError, match="exported for 12-d features and 2 classes"):
        Detector.from_run(run_dir, onnx=tmp_path / "other.onnx")


def test_distilled_student_exports(tmp_path):
    """A decomposed student (eval mode: RGB features only) exports like a plain detector."""
    from rgbtad.distill import build_model

    cfg = build_config({"data": {"input_dim": 12, "max_seq_len": 32},
                        "model": {"arch": [1, 1, 2], "embd_dim": 16, "fpn_dim": 16, "head_dim": 16, "n_head": 2,
                                  "n_mha_win_size": 5, "regression_range": [[0, 4], [4, 8], [8, 10000]]},
                        "distill": {"method": "decomposed", "teacher_input_dim": 20, "fusion": "laf"}})
    torch.manual_seed(0)
    student = build_model(cfg, 3).eval()
    diff = export_detector(student, tmp_path / "student.onnx", input_dim=12, num_classes=3, length=32)
    assert diff <= 1e-4 and not student.training
    ort_forward = OrtDetector(tmp_path / "student.onnx")
    feats, masks = pad_batch([torch.randn(12, 70)], max_seq_len=32, max_div_factor=student.max_div_factor,
                             training=False)
    with torch.no_grad():
        expected = student(feats, masks)
    meta = [{"video_id": "v", "fps": 10.0, "duration": 30.0, "feat_stride": 4, "feat_num_frames": 8}]
    (a,), (b,) = student.postprocess(ort_forward(feats, masks), meta), student.postprocess(expected, meta)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)


@pytest.mark.parametrize("family, section", [
    ("gtad", {"gtad": {"max_duration": 12, "hidden_dim_1d": 32, "hidden_dim_2d": 16, "hidden_dim_3d": 32,
                       "groups": 4, "align_resolution": 4, "context_resolution": 4}}),
    ("tadtr", {"tadtr": {"hidden_dim": 32, "num_heads": 4, "enc_layers": 1, "dec_layers": 1,
                         "dim_feedforward": 32, "num_queries": 4}}),
])
def test_windowed_families_are_refused_by_name(tmp_path, family, section):
    from rgbtad.detection import build_model
    from rgbtad.runs.run_dir import save_run

    cfg = build_config({"data": {"input_dim": 16, "max_seq_len": 48}, "model": {"name": family}, **section})
    save_run(tmp_path / "run", cfg, ["a", "b"], build_model(cfg, 2).state_dict())
    with pytest.raises(RgbtadError, match=f"model.name '{family}' does not export to ONNX: its evaluation "
                                          "cuts each video into windows in Python"):
        export_run(tmp_path / "run", tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()
