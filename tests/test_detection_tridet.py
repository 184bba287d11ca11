"""TriDet (`rgbtad.detection.tridet`) against the numbers of the TriDet release's own code.

The oracle is the release (dingfengshi/TriDet) itself: its modeling code was run once
outside the repository and only its numbers are committed, in
``tests/data/tridet_release_reference.pt``; ``tridet_release_reference.md`` next to it says
how they were made (release commit, configs, seeds, torch version, the C++ NMS built in
place). Three small configs: ``thumos-like`` (SGP, window 1, k 5, identity neck, 16 bins,
drop-path, multiclass soft-NMS), ``anet-like`` (SGP with per-level windows, average-pool
downsampling, absolute position encoding, FPN neck, 6 bins, label smoothing, no centre
sampling, class-agnostic soft-NMS with voting, and inputs twice ``max_seq_len``) and
``conv-plain-head`` (conv backbone, the release's ablation without the Trident head, hard
NMS, adaptive loss weight). The release state dict imported through
``convert_tridet_state_dict`` must make our detector reproduce its per-level outputs (rel
1e-4), its per-class Trident offsets, its losses (rel 1e-5) and its detections (labels
equal, segments within 1e-3 s, scores within 1e-4; segments the release clips to the empty
``[duration, duration]`` are dropped here, see `rgbtad.detection.postprocess`).
"""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from rgbtad.compat.tridet import convert_tridet_state_dict, map_tridet_key, spec_from_release
from rgbtad.config import build_config
from rgbtad.core.errors import RgbtadError
from rgbtad.detection import Detector, DetectorOutput, PyramidDetector, TriDet, TriDetOutput
from rgbtad.detection.registry import build_detector, build_model, model_name
from rgbtad.detection.trident import batch_class_offsets

REFERENCE = Path(__file__).parent / "data" / "tridet_release_reference.pt"
CASES = ("thumos-like", "anet-like", "conv-plain-head")
TRIDENT_CASES = ("thumos-like", "anet-like")
OUTPUT_REL = 1e-4
LOSS_REL = 1e-5
SECONDS_ATOL = 1e-3
SCORE_ATOL = 1e-4


@pytest.fixture(scope="module")
def reference():
    return torch.load(REFERENCE, weights_only=True)


def release_state(case: dict) -> dict[str, torch.Tensor]:
    """The release model's state dict (``module.`` keys, float32)."""
    packed = case["state"]
    values = packed["values"].float()
    state, offset = {}, 0
    for key, shape in zip(packed["keys"], packed["shapes"]):
        size = int(np.prod(shape)) if shape else 1
        state[key] = values[offset:offset + size].reshape(shape).clone()
        offset += size
    assert offset == values.numel()
    return state


def _imported(case: dict) -> TriDet:
    model = TriDet(spec_from_release(case["release_model"]))
    model.load_state_dict(convert_tridet_state_dict(release_state(case), model), strict=True)
    return model.eval()


def _inputs(block: dict):
    feats = block["feats"].float()
    return feats, torch.arange(feats.shape[-1])[None, :] < block["valid_lengths"][:, None]


def _assert_close(ours, theirs, rel=OUTPUT_REL):
    scale = theirs.abs().max().clamp(min=1e-6)
    assert ours.shape == theirs.shape
    assert ((ours - theirs).abs().max() / scale).item() <= rel


def _assert_outputs(out: TriDetOutput, expected: dict):
    assert len(out.cls_logits) == len(expected["cls_logits"])
    for level, logits in enumerate(expected["cls_logits"]):
        assert torch.equal(out.masks[level], expected["masks"][level]), f"level {level}"
        _assert_close(out.cls_logits[level], logits)
        _assert_close(out.center_offsets[level], expected["center_offsets"][level])
        if "start_logits" in expected:  # the release keeps them B x K x T
            _assert_close(out.start_logits[level].transpose(1, 2), expected["start_logits"][level])
            _assert_close(out.end_logits[level].transpose(1, 2), expected["end_logits"][level])


def _release_output(model: TriDet, recorded: dict) -> TriDetOutput:
    """A TriDetOutput made of the release's own network outputs."""
    trident = "start_logits" in recorded
    return TriDetOutput(
        cls_logits=recorded["cls_logits"], offsets=[] if trident else recorded["center_offsets"],
        masks=recorded["masks"], points=recorded["points"], center_offsets=recorded["center_offsets"],
        start_logits=[x.transpose(1, 2) for x in recorded.get("start_logits", [])],
        end_logits=[x.transpose(1, 2) for x in recorded.get("end_logits", [])], num_bins=model.num_bins)


def _assert_detections(ours, case):
    assert len(ours) == len(case["detections"])
    for got, want in zip(ours, case["detections"]):
        segs = want["segments"].double()
        keep = segs[:, 1] > segs[:, 0]  # the release keeps segments clipped to [duration, duration]
        assert got.video_id == want["video_id"]
        assert len(got) == int(keep.sum()) > 0
        np.testing.assert_array_equal(got.labels, want["labels"][keep].numpy())
        np.testing.assert_allclose(got.scores, want["scores"][keep].numpy(), atol=SCORE_ATOL, rtol=0)
        np.testing.assert_allclose(got.segments, segs[keep].numpy(), atol=SECONDS_ATOL, rtol=0)


# ------------------------------------------------------------------ the fixture and weights

def test_reference_fixture_provenance(reference):
    assert len(reference["release_commit"]) == 40
    assert set(reference["cases"]) == set(CASES)
    assert reference["release_commit"] in REFERENCE.with_suffix(".md").read_text()
    assert REFERENCE.stat().st_size < 600_000


@pytest.mark.parametrize("config", ["thumos_i3d", "anet_tsp"])
def test_full_release_configs_map_onto_our_detector(reference, config):
    shapes = reference["key_shapes"][config]  # the real release model's state dict
    with torch.random.fork_rng(devices=[]):
        model = TriDet(spec_from_release(reference["release_models"][config]))
    assert len(list(model.named_parameters())) == len(shapes) == 192
    state = {key: torch.zeros(shape) for key, shape in shapes.items()}
    assert set(convert_tridet_state_dict(state, model)) == set(model.state_dict())
    assert model.max_div_factor == {"thumos_i3d": 32, "anet_tsp": 480}[config]


@pytest.mark.parametrize("name", CASES)
def test_seeded_initialisation_matches_release(reference, name):
    case = reference["cases"][name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(case["seed"])
        model = TriDet(spec_from_release(case["release_model"]))
    state = model.state_dict()
    for key, (total, absolute) in case["init_sums"].items():
        ours = state[map_tridet_key(key[len("module."):])[0]].double()
        assert ours.sum().item() == pytest.approx(total, rel=1e-9, abs=1e-9), key
        assert ours.abs().sum().item() == pytest.approx(absolute, rel=1e-9, abs=1e-9), key


def test_key_mapping_reports_missing_unexpected_and_misshapen(reference):
    case = reference["cases"]["thumos-like"]
    model = _imported(case)
    broken = release_state(case)
    del broken["module.backbone.stem.0.convkw.weight"]
    broken["module.backbone.stem.0.extra.weight"] = torch.zeros(1)
    with pytest.raises(RgbtadError) as err:
        convert_tridet_state_dict(broken, model, "ckpt")
    assert "encoder.stem.0.convkw.weight" in str(err.value) and "stem.0.extra.weight" in str(err.value)
    wrong = release_state(case)
    wrong["module.start_head.cls_head.conv.bias"] = torch.zeros(7)
    with pytest.raises(RgbtadError, match="shape mismatch"):
        convert_tridet_state_dict(wrong, model, "ckpt")


# ------------------------------------------------------------------ outputs, losses, detections

@pytest.mark.parametrize("name", CASES)
def test_imported_detector_reproduces_release_outputs(reference, name):
    case = reference["cases"][name]
    model = _imported(case)
    feats, mask = _inputs(case["inputs"])
    with torch.no_grad():
        out = model(feats, mask)
    _assert_outputs(out, case["outputs"])
    for ours, theirs in zip(out.points, case["outputs"]["points"]):
        assert torch.equal(ours, theirs)
    if "long" in case:  # twice max_seq_len: the position table is interpolated
        feats, mask = _inputs(case["long"])
        with torch.no_grad():
            _assert_outputs(model(feats, mask), case["long"])


@pytest.mark.parametrize("name", TRIDENT_CASES)
def test_trident_offsets_match_release_decoding(reference, name):
    case = reference["cases"][name]
    model = _imported(case)
    feats, mask = _inputs(case["inputs"])
    with torch.no_grad():
        out = model(feats, mask)
    theirs = case["outputs"]["class_offsets"]  # B x sum T_l x K x 2, the release's decode_offset
    ours = batch_class_offsets(out.center_offsets, out.start_logits, out.end_logits, model.num_bins)
    _assert_close(ours, theirs)
    # the protocol's offsets: those of each point's highest-scoring class
    best = torch.cat(case["outputs"]["cls_logits"], 1).argmax(-1)
    expected = theirs.gather(2, best[..., None, None].expand(-1, -1, 1, 2)).squeeze(2)
    _assert_close(torch.cat(out.offsets, 1), expected)


@pytest.mark.parametrize("name", CASES)
def test_imported_detector_reproduces_release_losses(reference, name):
    case = reference["cases"][name]
    model = _imported(case)
    feats, mask = _inputs(case["inputs"])
    with torch.no_grad():
        out = model(feats, mask)
    model.train()  # the release's losses() moves its normaliser once before use
    losses = model.losses(out, case["gt"]["segments"], case["gt"]["labels"])
    assert set(losses) == set(model.loss_names)
    for key in model.loss_names:
        assert losses[key].item() == pytest.approx(case["losses"][key], rel=LOSS_REL), key
    assert model.loss_normalizer == pytest.approx(case["loss_normalizer"], rel=1e-12)


@pytest.mark.parametrize("name", CASES)
def test_imported_detector_reproduces_release_detections(reference, name):
    case = reference["cases"][name]
    model = _imported(case)
    _assert_detections(model.postprocess(_release_output(model, case["outputs"]), case["metas"]), case)
    feats, mask = _inputs(case["inputs"])
    with torch.no_grad():
        out = model(feats, mask)
    _assert_detections(model.postprocess(out, case["metas"]), case)


def test_trident_postprocess_needs_its_own_output(reference):
    case = reference["cases"]["thumos-like"]
    model = _imported(case)
    recorded = case["outputs"]
    plain = DetectorOutput(cls_logits=recorded["cls_logits"], offsets=recorded["center_offsets"],
                           masks=recorded["masks"], points=recorded["points"])
    with pytest.raises(TypeError, match="TriDetOutput"):
        model.postprocess(plain, case["metas"])


# ------------------------------------------------------------------ protocol and training

def _toy_spec(reference, **changes):
    settings = dict(reference["cases"]["thumos-like"]["release_model"], **changes)
    return spec_from_release(settings)


def test_tridet_implements_the_protocol(reference):
    model = TriDet(_toy_spec(reference))
    assert isinstance(model, Detector) and isinstance(model, PyramidDetector)
    assert model.strides == [1, 2, 4, 8, 16] and model.max_div_factor == 16
    assert model.training_inputs == () and model.loss_normalizer == 100.0
    groups = model.param_groups(0.05)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    decayed = {id(p) for p in groups[0]["params"]}
    assert id(model.encoder.stem[0].mlp_norm.weight) not in decayed
    assert id(model.encoder.stem[0].convkw.weight) in decayed
    model.check_length(80)
    with pytest.raises(ValueError, match="not divisible by 16"):
        model.check_length(72)
    with pytest.raises(ValueError, match="regression ranges"):
        _toy_spec(reference, regression_range=[[0, 4], [4, 10000]])


def _toy_batch(generator, num_classes, dim, length):
    feats = torch.randn(2, dim, length, generator=generator)
    masks = torch.ones(2, length, dtype=torch.bool)
    masks[1, 48:] = False
    feats[1, :, 48:] = 0
    segments = [torch.tensor([[4.0, 20.0], [30.0, 50.0]]), torch.tensor([[10.0, 40.0]])]
    labels = [torch.tensor([0, 2]), torch.tensor([1])]
    for video, (segs, labs) in enumerate(zip(segments, labels)):  # the classes leave a trace
        for (start, end), label in zip(segs.tolist(), labs.tolist()):
            feats[video, label, int(start):int(end)] += 3.0
    return feats, masks, segments, labels


def _summed_loss(model, feats, masks, segments, labels) -> float:
    """The eval-mode final loss times the normaliser: comparable while the normaliser moves."""
    model.eval()
    with torch.no_grad():
        loss = model.losses(model(feats, masks), segments, labels)["final_loss"].item()
    model.train()
    return loss * model.loss_normalizer


@pytest.mark.parametrize("trident", [True, False])
def test_tridet_trains_on_toy_data(reference, trident):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = TriDet(_toy_spec(reference, use_trident_head=trident, init_conv_vars=0.1))
        feats, masks, segments, labels = _toy_batch(torch.Generator().manual_seed(1), 5, 16, 64)
        optimizer = torch.optim.AdamW(model.param_groups(0.0), lr=5e-3)
        before = _summed_loss(model, feats, masks, segments, labels)
        for _ in range(12):  # training mode: drop-path and input noise on
            loss = model.losses(model(feats, masks), segments, labels)["final_loss"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            assert np.isfinite(loss.item())
        after = _summed_loss(model, feats, masks, segments, labels)
    assert after < 0.75 * before, (before, after)
    model.eval()
    with torch.no_grad():
        out = model(feats, masks)
    metas = [{"video_id": f"v{i}", "fps": 30.0, "duration": 8.0, "feat_stride": 4, "feat_num_frames": 16}
             for i in range(2)]
    detections = model.postprocess(out, metas)
    assert [d.video_id for d in detections] == ["v0", "v1"] and all(len(d) > 0 for d in detections)


# ------------------------------------------------------------------ the builder

def test_the_config_selects_tridet_with_the_release_thumos_settings(reference):
    """model.name=tridet builds TriDet; its defaults are the release's THUMOS14 I3D model."""
    cfg = build_config({"model": {"name": "tridet"}, "data": {"input_dim": 2048}})
    assert model_name(cfg) == "tridet" and cfg.model.backbone == "sgp"  # the family's preset
    model = build_model(cfg, 20)
    assert isinstance(model, TriDet) and model.nms.voting_iou_weight is False
    release = reference["release_models"]["thumos_i3d"]
    assert spec_from_release(release) == dataclasses.replace(model.spec, nms=spec_from_release(release).nms)
    # the release's THUMOS14 checkpoint layout loads strictly into it
    state = {key: torch.zeros(shape) for key, shape in reference["key_shapes"]["thumos_i3d"].items()}
    model.load_state_dict(convert_tridet_state_dict(state, model), strict=True)
    assert type(build_detector(cfg, 20, input_dim=24)) is TriDet


def test_tridet_config_errors_name_the_key():
    with pytest.raises(RgbtadError, match="'model.backbone': 'transformer' is not a backbone of model.name 'tridet'"):
        build_config({"model": {"name": "tridet", "backbone": "transformer"}})
    with pytest.raises(RgbtadError, match="'tridet.downsample_type': 'median' is not one of"):
        build_config({"model": {"name": "tridet"}, "tridet": {"downsample_type": "median"}})
    with pytest.raises(RgbtadError, match="'tridet.sgp_win_size' needs 6 values, got 2"):
        build_config({"model": {"name": "tridet"}, "tridet": {"sgp_win_size": [1, 3]}})
    # an ActionFormer config keeps its own backbone whatever the TriDet section says
    assert build_config({"tridet": {"num_bins": 4}}).model.backbone == "transformer"
