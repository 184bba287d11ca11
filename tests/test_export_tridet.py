"""ONNX export of TriDet runs: the graph carries the Trident head's raw branches, OrtDetector
rebuilds a `TriDetOutput`, and TriDet's own post-processing gives PyTorch's detections; and
ActionFormer graphs keep the format they had before (old files still load)."""

import json

import numpy as np
import pytest
import torch

from rgbtad.cli import main
from rgbtad.config import build_config
from rgbtad.core.errors import RgbtadError
from rgbtad.data.batching import pad_batch
from rgbtad.detection import build_detector
from rgbtad.detection.attention import local_attention_mode
from rgbtad.detection.trident import TriDetOutput
from rgbtad.export.detector import export_detector
from rgbtad.export.runtime import OrtDetector
from rgbtad.features.extract import extract_features
from rgbtad.inference.detect import Detector
from rgbtad.runs.run_dir import attach_backbone, save_run
from rgbtad.video.snippets import SnippetSpec
from test_detect import CLASSES, SIZE, SNIPPET, STRIDE

FIELDS = ("cls_logits", "offsets", "masks", "center_offsets", "start_logits", "end_logits")


def tridet_config(input_dim, trident=True, **extra):
    return build_config({
        "data": {"input_dim": input_dim, "feat_stride": STRIDE, "num_frames": SNIPPET, "max_seq_len": 32},
        "model": {"name": "tridet", "arch": [1, 1, 2], "embd_dim": 16, "fpn_dim": 16, "head_dim": 16,
                  "regression_range": [[0, 4], [4, 8], [8, 10000]]},
        "tridet": {"sgp_mlp_dim": 16, "num_bins": 4, "use_trident_head": trident},
        # a random detector scores about 0.01 everywhere: keep all its detections (none tied at a cut)
        "test": {"pre_nms_thresh": 0.0001, "min_score": 0.0001, "max_seg_num": 2000}, **extra})


@pytest.fixture(scope="module")
def clip(shared_data):
    return shared_data / "videos" / "mmaction2_test.avi"


@pytest.fixture(scope="module")
def features_dir(tmp_path_factory, clip):
    out = tmp_path_factory.mktemp("features")
    assert extract_features([clip], out, backbone="tsm_tiny", progress=False, batch_size=4,
                            snippets=SnippetSpec(frames=SNIPPET, stride=STRIDE, fps=10, size=SIZE)).ok
    return out


def _run(tmp_path_factory, features_dir, trident):
    run = tmp_path_factory.mktemp(f"tridet_run_{trident}")
    torch.manual_seed(3)
    model = build_detector(tridet_config(128, trident), len(CLASSES))
    save_run(run, tridet_config(128, trident), CLASSES, model.state_dict())
    assert attach_backbone(run, features_dir)
    return run


def _plain(out):
    return list(out.cls_logits) + list(out.offsets) + [m.float() for m in out.masks]


def _fields(out):
    return [(name, x.float()) for name in FIELDS for x in getattr(out, name)]


def _assert_same_detections(got, expected):
    """The same detections up to the order of random scores tied within ONNX Runtime's rounding:
    each one has its own counterpart, the same label, score within 1e-4 and segment within 1e-3 s."""
    assert len(expected) > 0 and len(got) == len(expected)
    unmatched = list(expected)
    for a in got:
        match = next((b for b in unmatched if b["label"] == a["label"] and abs(b["score"] - a["score"]) <= 1e-4
                      and max(abs(x - y) for x, y in zip(a["segment"], b["segment"])) <= 1e-3), None)
        assert match is not None, f"no PyTorch detection matches {a}"
        unmatched.remove(match)


def _results(detections):
    return [{"label": int(label), "score": float(score), "segment": [float(v) for v in segment]}
            for segment, score, label in zip(detections.segments, detections.scores, detections.labels)]


@pytest.mark.parametrize("trident", [True, False])
def test_tridet_run_exports_and_detects_as_pytorch(tmp_path_factory, features_dir, clip, tmp_path, trident):
    run = _run(tmp_path_factory, features_dir, trident)
    out = tmp_path / "tridet.onnx"
    assert main(["export", str(run), str(out)]) == 0
    torch_detector = Detector.from_run(run)
    onnx_detector = Detector.from_run(run, onnx=out)
    forward = onnx_detector.forward
    assert forward.meta["num_bins"] == (4 if trident else 0)
    model = torch_detector.model
    feats, entry = torch_detector.features(clip)
    # raw outputs within 1e-4 at two lengths, every branch TriDet decodes from
    for length in (20, 3 * feats.shape[0]):
        x = torch.from_numpy(np.resize(feats, (length, feats.shape[1])).T.copy())
        f, m = pad_batch([x], max_seq_len=32, max_div_factor=model.max_div_factor, training=False)
        with torch.no_grad():
            expected = model(f, m)
        got = forward(f, m)
        assert type(got) is TriDetOutput and got.num_bins == expected.num_bins
        assert [name for name, _ in _fields(got)] == [name for name, _ in _fields(expected)]
        assert len(got.start_logits) == (3 if trident else 0)
        for (_, a), (_, b) in zip(_fields(got), _fields(expected)):
            assert a.shape == b.shape and float((a - b).abs().max()) <= 1e-4
        for a, b in zip(got.points, expected.points):
            assert torch.equal(a, b)
    # TriDet's own post-processing on either output: the same detections
    kwargs = dict(video_id=clip.stem, fps=entry["fps"], duration=entry["duration"])
    _assert_same_detections(onnx_detector.detect_features(feats, **kwargs).to_results(),
                            torch_detector.detect_features(feats, **kwargs).to_results())
    if trident:  # the command line, PyTorch against ONNX Runtime
        for name, extra in (("torch.json", []), ("onnx.json", ["--onnx", str(out)])):
            assert main(["detect", str(run), str(clip), "--out", str(tmp_path / name), "--quiet", *extra]) == 0
        results = [json.loads((tmp_path / name).read_text())["results"][clip.stem]
                   for name in ("onnx.json", "torch.json")]
        _assert_same_detections(*results)
        # a graph of the ablation (no Trident head) does not fit this run
        torch.manual_seed(0)
        ablation = build_detector(tridet_config(128, trident=False), len(CLASSES))
        export_detector(ablation, tmp_path / "ablation.onnx", input_dim=128, num_classes=3, length=32, check=False)
        with pytest.raises(RgbtadError, match=r"holds TriDetOutput \(num_bins 0\) outputs, the run's detector "
                                         r"gives TriDetOutput \(num_bins 4\) outputs"):
            Detector.from_run(run, onnx=tmp_path / "ablation.onnx")


@pytest.mark.parametrize("method", ["decomposed", "conventional"])
def test_tridet_student_exports(tmp_path, method):
    """Students over TriDet (eval forward: their inner TriDet(-head)'s TriDetOutput)."""
    from rgbtad.distill import build_model

    cfg = tridet_config(12, distill={"method": method, "teacher_input_dim": 20, "fusion": "laf"})
    torch.manual_seed(0)
    student = build_model(cfg, 3).eval()
    assert export_detector(student, tmp_path / "student.onnx", input_dim=12, num_classes=3, length=32) <= 1e-4
    feats, masks = pad_batch([torch.randn(12, 70)], max_seq_len=32, max_div_factor=student.max_div_factor,
                             training=False)
    with torch.no_grad():
        expected = student(feats, masks)
    got = OrtDetector(tmp_path / "student.onnx")(feats, masks)
    assert type(got) is TriDetOutput and got.num_bins == 4
    meta = [{"video_id": "v", "fps": 10.0, "duration": 30.0, "feat_stride": 4, "feat_num_frames": 8}]
    (a,), (b,) = student.postprocess(got, meta), student.postprocess(expected, meta)
    _assert_same_detections(_results(a), _results(b))


def _tiny_actionformer():
    cfg = build_config({"data": {"input_dim": 12, "max_seq_len": 32},
                        "model": {"arch": [1, 1, 2], "embd_dim": 16, "fpn_dim": 16, "head_dim": 16, "n_head": 2,
                                  "n_mha_win_size": 5, "regression_range": [[0, 4], [4, 8], [8, 10000]]}})
    torch.manual_seed(0)
    return build_detector(cfg, 3).eval()


class _FirstFormatGraph(torch.nn.Module):
    """The detector graph as the first `rgbtad export` wrote it: every level's class logits,
    then offsets, then masks."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, feats, masks):
        out = self.model(feats, masks)
        return tuple(out.cls_logits) + tuple(out.offsets) + tuple(out.masks)


def test_actionformer_graphs_keep_their_format_and_old_files_load(tmp_path):
    from rgbtad.export.graph_file import FORMAT, OPSET, write_metadata

    model = _tiny_actionformer()
    names = [f"{field}_{level}" for field in ("cls_logits", "offsets", "masks") for level in range(3)]
    export_detector(model, tmp_path / "new.onnx", input_dim=12, num_classes=3, length=32, check=False)
    new = OrtDetector(tmp_path / "new.onnx")
    assert [o.name for o in new.session.get_outputs()] == names
    assert set(new.meta) == {"input_dim", "num_classes", "levels", "max_div_factor"}
    # a file written by the first exporter (no output type, no field list) still runs
    feats, masks = pad_batch([torch.randn(12, 32)], max_seq_len=32, max_div_factor=model.max_div_factor,
                             training=False)
    axes = {"feats": {2: "length"}, "masks": {1: "length"}, **{n: {1: f"length_{n[-1]}"} for n in names}}
    with torch.no_grad(), local_attention_mode(model, "shifted"):
        torch.onnx.export(_FirstFormatGraph(model), (feats, masks), str(tmp_path / "old.onnx"), dynamo=False,
                          input_names=["feats", "masks"], output_names=names, dynamic_axes=axes,
                          opset_version=OPSET)
    write_metadata(tmp_path / "old.onnx", FORMAT, {**new.meta, "classes": ["a", "b", "c"], "max_seq_len": 32,
                                                   "backbone_file": None})
    feats, masks = pad_batch([torch.randn(12, 50)], max_seq_len=32, max_div_factor=model.max_div_factor,
                             training=False)
    with torch.no_grad():
        expected = model(feats, masks)
    got = OrtDetector(tmp_path / "old.onnx")(feats, masks)
    assert type(got) is type(expected)
    for a, b in zip(_plain(got), _plain(expected)):
        assert a.shape == b.shape and float((a - b).abs().max()) <= 1e-4
    meta = [{"video_id": "v", "fps": 10.0, "duration": 20.0, "feat_stride": 4, "feat_num_frames": 8}]
    (a,), (b,) = model.postprocess(got, meta), model.postprocess(expected, meta)
    _assert_same_detections(_results(a), _results(b))

