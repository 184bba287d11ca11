"""G-TAD (`rgbtad.detection.gtad`) against the numbers of the G-TAD release's own code.

The oracle is the release (frostinassiky/gtad, branch master) itself: its model, label,
loss and post-processing code ran once outside the repository (its compiled Align1D op
replaced by a loop-for-loop pure-PyTorch transcription of the CUDA kernel) and only its
numbers are committed, in ``tests/data/gtad_release_reference.pt``;
``gtad_release_reference.md`` says how they were made. The release's weights were drawn by
a recipe from one seed in its state-dict order (`_release_state`), so only key names and
shapes are stored. Two cases: ``style1`` (the release's THUMOS14 layout shrunk to windows of
32 snippets and anchors up to 8, context of the last layer, adaptive sampling) with its
training targets, losses and the proposals of a 60-snippet video cut into three windows;
``style2`` (context from all layers' neighbours, 2 samples per point, anchors up to 12).
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from rgbtad.config import build_config, load_config
from rgbtad.core.errors import RgbtadError
from rgbtad.detection import GTAD, Detector, GTADOutput, GTADSpec
from rgbtad.detection.gtad import release_key
from rgbtad.detection.gtad_align import align1d, anchor_regions
from rgbtad.detection.gtad_postprocess import release_soft_nms, video_proposals, window_starts
from rgbtad.detection.registry import build_model, model_name
from rgbtad.inference.predict import infer_features
from rgbtad.runs.run_dir import load_run
from rgbtad.synthetic.toy_features import make_toy_features
from rgbtad.training.trainer import train

REFERENCE = Path(__file__).parent / "data" / "gtad_release_reference.pt"
OUTPUT_REL = 1e-4
LOSS_REL = 1e-5
CONTEXTS = {0: "none", 1: "last", 2: "all"}


@pytest.fixture(scope="module")
def reference():
    return torch.load(REFERENCE, weights_only=True)


def _spec(opt, **over) -> GTADSpec:
    settings = dict(input_dim=opt["feat_dim"], num_classes=1, temporal_scale=opt["temporal_scale"],
                    max_duration=opt["max_duration"], context=CONTEXTS[opt["goi_style"]],
                    align_sampling=opt["goi_samp"], map_kernel_size=opt["kern_2d"])
    settings.update(over)
    return GTADSpec(**settings)


def _release_state(case) -> dict[str, torch.Tensor]:
    """The release model's weights: N(0, 1) / sqrt(fan_in) (biases N(0, 1) * 0.1) from one
    generator, entry after entry in its state-dict order (the fixture's recipe)."""
    generator = torch.Generator().manual_seed(case["seed"])
    state = {}
    for key, shape in zip(case["keys"], case["shapes"]):
        value = torch.randn(shape, generator=generator)
        state[key] = value / math.sqrt(value[0].numel()) if len(shape) > 1 else value * 0.1
    return state


def _imported(case) -> GTAD:
    model = GTAD(_spec(case["opt"]))
    model.load_state_dict({release_key(k): v for k, v in _release_state(case).items()}, strict=True)
    return model.eval()


def _relative(actual, expected) -> float:
    return float(((actual.double() - expected.double()).abs() / expected.double().abs().clamp(min=1e-6)).max())


def _gt_segments(case):
    """The fixture's ground truth (frames of windows at a 40-frame stride) on the grid."""
    skip = case["opt"]["skip_videoframes"]
    return [torch.tensor(boxes) / skip - first / skip for first, boxes in case["windows"]]


def test_reference_fixture_provenance(reference):
    assert reference["release_commit"] == "6deb5b1bc6883b48bd22e0cc593069643c953e3d"
    assert reference["torch_version"].startswith("2.13.0")
    for case in reference["cases"].values():  # the recipe regenerates the weights the release ran
        state = _release_state(case)
        for key, (total, absolute) in case["init_sums"].items():
            assert math.isclose(float(state[key].double().sum()), total, rel_tol=1e-9, abs_tol=1e-9)
            assert math.isclose(float(state[key].double().abs().sum()), absolute, rel_tol=1e-9)


def test_release_thumos_checkpoint_layout_maps_onto_ours(reference):
    """configs/thumos_i3d_gtad.yaml is the release's THUMOS14 model: its checkpoints map on."""
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "thumos_i3d_gtad.yaml")
    model = build_model(cfg, 20)
    assert model.spec == GTADSpec(input_dim=2048, num_classes=20, temporal_scale=256)  # release defaults
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    mapped = {release_key(k): tuple(shape) for k, shape in reference["release_thumos_shapes"].items()}
    assert mapped == ours
    with pytest.raises(KeyError, match="not a G-TAD release state-dict key"):
        release_key("module.pos")


@pytest.mark.parametrize("name", ["style1", "style2"])
def test_imported_detector_reproduces_release_outputs(reference, name):
    case = reference["cases"][name]
    model = _imported(case)
    with torch.no_grad():
        proposal_map, start, end, _ = model.network(case["feats"])
    assert proposal_map.shape == case["map"].shape
    assert _relative(proposal_map, case["map"]) < OUTPUT_REL
    assert _relative(start, case["start"]) < OUTPUT_REL
    assert _relative(end, case["end"]) < OUTPUT_REL


def test_targets_and_losses_match_release(reference):
    case = reference["cases"]["style1"]
    model = _imported(case).train()
    segments = _gt_segments(case)
    labels = [torch.zeros(len(s), dtype=torch.long) for s in segments]
    start, end, iou, _ = model.criterion.targets(segments, labels, "cpu")
    torch.testing.assert_close(start, case["gt_start"], rtol=0, atol=1e-6)
    torch.testing.assert_close(end, case["gt_end"], rtol=0, atol=1e-6)
    torch.testing.assert_close(iou, case["gt_iou_map"], rtol=0, atol=1e-6)
    out = model(case["feats"], torch.ones(2, 32, dtype=torch.bool))
    losses = model.losses(out, segments, labels, draws=tuple(case["draws"]))
    expected = case["losses"]
    for ours, theirs in (("reg_loss", "reg"), ("cls_loss", "cls"), ("boundary_loss", "node"),
                         ("final_loss", "total")):
        assert math.isclose(losses[ours].item(), expected[theirs], rel_tol=LOSS_REL), (ours, losses[ours])
    losses["final_loss"].backward()  # the sparse alignment is differentiable
    assert model.embed.weight.grad is not None and model.align_conv.conv.weight.grad.abs().sum() > 0


def test_sliding_windows_and_proposals_match_release(reference):
    case = reference["cases"]["style1"]
    expected = case["postprocess"]
    model = _imported(case)
    video = expected["video"].t()[None]
    with torch.no_grad():
        out = model(video, torch.ones(1, video.shape[-1], dtype=torch.bool))
    assert out.window_start.tolist() == expected["window_starts"] == [0, 16, 28]
    assert _relative(out.proposal_map, expected["window_map"]) < OUTPUT_REL
    skip = case["opt"]["skip_videoframes"]
    segs, scores, labels = video_proposals(out.proposal_map, out.start, out.end, out.window_start.tolist(),
                                           float(skip), model.spec.proposals)
    assert len(scores) == len(expected["scores"]) == 200 and labels.eq(0).all()
    assert torch.equal(segs, expected["proposals"] / skip)  # the same proposals, in the same order
    assert _relative(scores, expected["scores"]) < OUTPUT_REL
    meta = {"video_id": "v", "fps": 10.0, "duration": 240.0, "feat_stride": skip, "feat_num_frames": skip}
    (detections,) = model.postprocess(out, [meta])
    seconds = (expected["proposals"].numpy() * 1.0 + 0.5 * skip) / 10.0  # rgbtad's snippet grid
    np.testing.assert_allclose(detections.segments, np.minimum(seconds, 240.0), atol=1e-9)
    assert np.all(np.diff(detections.scores) <= 0) and np.all(detections.labels == 0)


def test_align1d_samples_as_the_release_kernel():
    x = torch.arange(10, dtype=torch.float32).view(1, 1, 10)
    regions = torch.tensor([[-0.5, 9.5], [0.1, 0.9], [-3.0, -1.5], [8.0, 12.0]])
    out = align1d(x, regions, 4)[0, :, 0]
    # bins of 2.5 snippets, ceil(10 / 4) = 3 points each, linear interpolation
    torch.testing.assert_close(out[0], torch.tensor([7 / 9, 3.25, 5.75, 74 / 9]))  # points at 9+ read 9
    torch.testing.assert_close(out[1], torch.tensor([0.225, 0.475, 0.725, 0.975]))  # a 1-snippet region
    torch.testing.assert_close(out[2], torch.zeros(4))  # left of -1: nothing
    torch.testing.assert_close(out[3], torch.tensor([8.5, 9.0, 0.0, 0.0]))  # up to T: the last snippet, then 0
    assert anchor_regions(4, 2, 0.5).tolist() == [[-0.5, 0.5], [-1.0, 2.0], [0.5, 1.5], [0.0, 3.0],
                                                  [1.5, 2.5], [1.0, 4.0], [2.5, 3.5], [0.0, 0.0]]


def test_soft_nms_keeps_the_release_rules():
    segs = torch.tensor([[0.0, 10.0], [1.0, 10.0], [10.0, 20.0], [30.0, 40.0]], dtype=torch.float64)
    scores = torch.tensor([0.9, 0.8, 0.7, 0.0], dtype=torch.float64)
    kept, values = release_soft_nms(segs, scores, 0.46, 200)
    # touching segments do not decay; the overlap decays by exp(-0.81 / 0.46); a zero score stops
    assert kept.tolist() == [[0.0, 10.0], [10.0, 20.0], [1.0, 10.0]]
    np.testing.assert_allclose(values.numpy(), [0.9, 0.7, 0.8 * math.exp(-0.81 / 0.46)])
    kept, _ = release_soft_nms(segs[:2], torch.tensor([0.9, 0.8], dtype=torch.float64), 0.46, 200)
    assert len(kept) == 1  # the release never keeps the last proposal left
    assert window_starts(60, 32) == [0, 16, 28] and window_starts(60, 32, tail_min=12) == [0, 16]
    assert window_starts(20, 32) == [0] and window_starts(64, 32) == [0, 16, 32]


def _toy_cfg(**gtad):
    return build_config({"model": {"name": "gtad"}, "data": {"input_dim": 16, "max_seq_len": 48},
                         "gtad": {"max_duration": 12, "hidden_dim_1d": 32, "hidden_dim_2d": 16, "hidden_dim_3d": 32,
                                  "groups": 4, "align_resolution": 4, "context_resolution": 4, **gtad}})


def _toy_batch(generator):
    feats = torch.randn(2, 16, 48, generator=generator) * 0.5
    masks = torch.ones(2, 48, dtype=torch.bool)
    masks[1, 40:] = False
    segments = [torch.tensor([[4.0, 12.0], [25.0, 33.0]]), torch.tensor([[10.0, 20.0]])]
    labels = [torch.tensor([0, 2]), torch.tensor([1])]
    for video, (segs, labs) in enumerate(zip(segments, labels)):  # the actions leave a trace
        for (start, end), label in zip(segs.tolist(), labs.tolist()):
            feats[video, label, int(start):int(end)] += 3.0
    return feats, masks, segments, labels


@pytest.mark.parametrize("multiclass", [False, True])
def test_gtad_trains_on_toy_data(multiclass):
    cfg = _toy_cfg(multiclass=multiclass)
    assert model_name(cfg) == "gtad" and cfg.model.backbone == "gcnext"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model(cfg, 3)
        assert isinstance(model, GTAD) and isinstance(model, Detector)
        feats, masks, segments, labels = _toy_batch(torch.Generator().manual_seed(1))
        optimizer = torch.optim.Adam(model.param_groups(0.0), lr=1e-2)
        history = []
        for _ in range(20):
            losses = model.losses(model(feats, masks), segments, labels)
            assert set(model.loss_names) <= set(losses)
            optimizer.zero_grad()
            losses["final_loss"].backward()
            optimizer.step()
            history.append(losses["final_loss"].item())
    assert np.all(np.isfinite(history)) and np.mean(history[-3:]) < 0.5 * np.mean(history[:3]), history
    model.eval()
    with torch.no_grad():
        out = model(feats[:, :, :40], masks[:, :40])  # any length at evaluation
    assert isinstance(out, GTADOutput) and out.cls_scores.shape[1] == (3 if multiclass else 1)
    metas = [{"video_id": f"v{i}", "fps": 30.0, "duration": 6.4, "feat_stride": 4, "feat_num_frames": 16}
             for i in range(2)]
    detections = model.postprocess(out, metas)
    assert [d.video_id for d in detections] == ["v0", "v1"] and all(len(d) > 0 for d in detections)
    assert all(d.segments.min() >= 0 and d.segments.max() <= 6.4 for d in detections)
    assert {int(x) for d in detections for x in d.labels} <= ({0, 1, 2} if multiclass else {0})


def test_gtad_trains_and_infers_through_the_run_directory(tmp_path):
    """`rgbtad train` / `rgbtad infer`'s path: the trainer's random windows, evaluation on
    whole videos (sliding windows), the saved run rebuilt by `load_run`."""
    ann = make_toy_features(tmp_path / "toy", num_train=6, num_test=3, num_classes=2, dim=16, seed=2,
                            min_len=60, max_len=110)
    cfg = _toy_cfg(multiclass=True)
    cfg.data.annotations, cfg.data.features = str(ann), str(tmp_path / "toy" / "features")
    cfg.data.train_split, cfg.data.val_split = "train", "test"
    cfg.train.epochs, cfg.train.warmup_epochs, cfg.train.batch_size, cfg.train.ema_decay = 2, 0, 3, 0.0
    summary = train(cfg, tmp_path / "run", device="cpu", progress=False)
    assert summary["epochs"] == 2 and 0.0 <= summary["average_mAP"] <= 1.0
    _, classes, model = load_run(tmp_path / "run", torch.device("cpu"))
    assert isinstance(model, GTAD) and classes == ["action_0", "action_1"]
    out_path = tmp_path / "results.json"
    infer_features(tmp_path / "run", features_dir=tmp_path / "toy" / "features", annotations=ann, split="test",
                   out_path=out_path, device="cpu", progress=False)
    results = json.loads(out_path.read_text())["results"]
    assert len(results) == 3 and all(len(dets) > 0 for dets in results.values())
    assert {d["label"] for dets in results.values() for d in dets} <= set(classes)


def test_gtad_protocol_members_and_long_videos():
    torch.manual_seed(0)
    model = build_model(_toy_cfg(), 2).eval()
    assert model.strides == [1] and model.max_div_factor == 1 and model.loss_normalizer == 1.0
    assert model.training_inputs == ()
    assert sum(len(g["params"]) for g in model.param_groups(1e-4)) == len(list(model.parameters()))
    feats = torch.randn(2, 16, 130)
    masks = torch.ones(2, 130, dtype=torch.bool)
    masks[1, 30:] = False
    with torch.no_grad():
        out = model(feats, masks)
    assert out.window_video.tolist() == [0] * 5 + [1]  # 130 snippets: windows at 0, 24, 48, 72, 82
    assert out.window_start.tolist() == [0, 24, 48, 72, 82, 0]
    assert out.lengths.tolist() == [130, 30]


def test_gtad_bad_inputs_raise_clear_errors():
    model = build_model(_toy_cfg(), 2)
    with pytest.raises(ValueError, match="expects 16 feature channels"):
        model(torch.randn(1, 8, 48), torch.ones(1, 48, dtype=torch.bool))
    with pytest.raises(ValueError, match="trains on windows of 48 snippets"):
        model(torch.randn(1, 16, 40), torch.ones(1, 40, dtype=torch.bool))
    with pytest.raises(ValueError, match="at least one snippet"):
        model.eval()(torch.randn(1, 16, 0), torch.ones(1, 0, dtype=torch.bool))
    with pytest.raises(ValueError, match="B x C x L features"):
        model(torch.randn(16, 48), torch.ones(1, 48, dtype=torch.bool))
    with pytest.raises(RgbtadError, match="'gtad.max_duration' 64 must be below data.max_seq_len 48"):
        build_config({"model": {"name": "gtad"}, "data": {"max_seq_len": 48}})
    with pytest.raises(RgbtadError, match="'gtad.context': 'middle' is not one of"):
        build_config({"model": {"name": "gtad"}, "gtad": {"context": "middle"}})
    with pytest.raises(RgbtadError, match="not a backbone of model.name 'gtad'"):
        build_config({"model": {"name": "gtad", "backbone": "sgp"}})
    with pytest.raises(RgbtadError, match="'distill.method' 'c2ms' needs a detector with per-position outputs"):
        build_config({"model": {"name": "gtad"}, "data": {"max_seq_len": 256}, "distill": {"method": "c2ms"}})
    with pytest.raises(RgbtadError, match="input_dim 10 is not divisible by input_groups 4"):
        build_model(build_config({"model": {"name": "gtad"}, "data": {"input_dim": 10}}), 2)
