"""TadTR (`rgbtad.detection.tadtr`) against the numbers of the TadTR release's own code.

The oracle is the release (xlliu7/TadTR) itself: its model, criterion, matcher and
post-processing were run once outside the repository and only their numbers are committed,
in ``tests/data/tadtr_release_reference.pt``; ``tadtr_release_reference.md`` next to it says
how (release commit, the pure-PyTorch stand-in for its CUDA-only RoIAlign, seeds). Three
small configs: ``thumos-like`` (segment refinement, actionness, unmasked full windows as the
release's THUMOS pipeline feeds them), ``masked`` (the release's masked path: one window
padded past step 20) and ``plain`` (no refinement, no actionness, three decoder layers). The
release state dict, imported by `convert_release_state_dict`, must make our model reproduce
its per-layer logits and segments and its actionness (rel 1e-4), its Hungarian matching of
every layer (equal), its losses (rel 1e-5) and, on a 90-step video, its test windows, top-k
detections per window and the cross-window fusion (equal labels, scores within 1e-5,
segments within 1e-3 steps; near-ties may swap places). Under the release's seed a fresh
model draws the release's initial weights.
"""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from rgbtad.config import build_config
from rgbtad.core.errors import RgbtadError
from rgbtad.detection import Detector, TadTR, TadTROutput, TadTRSpec
from rgbtad.detection.registry import build_model
from rgbtad.detection.tadtr import convert_release_state_dict
from rgbtad.detection.tadtr_matcher import cw_to_bounds
from rgbtad.detection.tadtr_postprocess import window_top_k

REFERENCE = Path(__file__).parent / "data" / "tadtr_release_reference.pt"
CASES = ("thumos-like", "masked", "plain")
OUTPUT_REL = 1e-4
LOSS_REL = 1e-5


@pytest.fixture(scope="module")
def reference():
    torch.set_num_threads(1)
    return torch.load(REFERENCE, weights_only=True)


def release_state(case: dict) -> dict[str, torch.Tensor]:
    values, state, offset = case["state_values"].float(), {}, 0
    for key, shape in zip(case["state_keys"], case["state_shapes"]):
        size = int(np.prod(shape)) if shape else 1
        state[key] = values[offset:offset + size].reshape(shape).clone()
        offset += size
    assert offset == values.numel()
    return state


def release_spec(name: str, case: dict, **overrides) -> TadTRSpec:
    r = case["release_cfg"]
    return TadTRSpec(input_dim=case["feats"].shape[1], num_classes=case["logits"][0].shape[-1], window=case["T"],
                     hidden_dim=r["hidden_dim"], num_heads=r["nheads"], enc_layers=r["enc_layers"],
                     dec_layers=r["dec_layers"], dim_feedforward=r["dim_feedforward"], dropout=r["dropout"],
                     num_queries=r["num_queries"], enc_n_points=r["enc_n_points"], dec_n_points=r["dec_n_points"],
                     seg_refine=r["seg_refine"], act_reg=r["act_reg"], mask_padding=name == "masked",
                     set_cost_class=r["set_cost_class"], set_cost_seg=r["set_cost_seg"],
                     set_cost_iou=r["set_cost_iou"], cls_loss_coef=r["cls_loss_coef"],
                     seg_loss_coef=r["seg_loss_coef"], iou_loss_coef=r["iou_loss_coef"],
                     act_loss_coef=r["act_loss_coef"], **overrides)


def imported(name: str, case: dict, **overrides) -> TadTR:
    model = TadTR(release_spec(name, case, **overrides))
    model.load_state_dict(convert_release_state_dict(release_state(case), model), strict=True)
    return model


def assert_close(ours: torch.Tensor, theirs: torch.Tensor, rel: float = OUTPUT_REL):
    assert ours.shape == theirs.shape
    scale = theirs.abs().max().clamp(min=1e-6)
    assert ((ours - theirs).abs().max() / scale).item() <= rel


def run_training_forward(name: str, case: dict):
    """The training-mode forward on the case's windows (dropout is 0 in the fixture)."""
    model = imported(name, case).train()
    feats = case["feats"].float()
    masks = torch.arange(case["T"])[None] < case["valid_lengths"][:, None]
    out = model(feats, masks)
    gt = [cw_to_bounds(t["segments"]) * out.scale[i] for i, t in enumerate(case["targets"])]
    return model, out, model.losses(out, gt, [t["labels"] for t in case["targets"]])


@pytest.mark.parametrize("name", CASES)
def test_forward_matches_the_release(reference, name):
    case = reference["cases"][name]
    _, out, _ = run_training_forward(name, case)
    assert isinstance(out, TadTROutput) and len(out.logits) == len(case["logits"])
    for layer, (ours, theirs) in enumerate(zip(out.logits, case["logits"])):
        assert_close(ours, theirs), f"logits of layer {layer}"
    for layer, (ours, theirs) in enumerate(zip(out.segments, case["segments"])):
        assert_close(ours, theirs), f"segments of layer {layer}"
    if case["actionness"] is None:
        assert out.actionness is None
    else:
        assert_close(out.actionness, case["actionness"])
    # the query features of every layer stay available for query-level distillation
    assert [q.shape for q in out.query_feats] == [(2, case["release_cfg"]["num_queries"],
                                                   case["release_cfg"]["hidden_dim"])] * len(out.logits)


@pytest.mark.parametrize("name", CASES)
def test_matching_and_losses_match_the_release(reference, name):
    case = reference["cases"][name]
    model, _, losses = run_training_forward(name, case)
    assert set(losses) == set(model.loss_names) == set(case["losses"]) | {"final_loss"}
    for key, value in case["losses"].items():
        assert losses[key].item() == pytest.approx(value, rel=LOSS_REL, abs=1e-7), key
    assert losses["final_loss"].item() == pytest.approx(case["weighted_loss"], rel=LOSS_REL)
    for layer, (ours, theirs) in enumerate(zip(model.criterion.last_matches, case["matches"])):
        for (q, g), (rq, rg) in zip(ours, theirs):
            assert torch.equal(q, rq) and torch.equal(g, rg), f"matching of layer {layer}"
    assert model.loss_normalizer == 5.0  # ground-truth segments of the batch, the release's divisor
    losses["final_loss"].backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if "actionness" not in n)


def _match_rows(ours: np.ndarray, theirs: np.ndarray):
    """Pair every release row (start, end, score, label) with one of ours."""
    assert ours.shape == theirs.shape
    free = np.ones(len(ours), dtype=bool)
    for row in theirs:
        close = free & (ours[:, 3] == row[3]) & (np.abs(ours[:, 2] - row[2]) <= 1e-5) \
            & (np.abs(ours[:, :2] - row[:2]).max(1) <= 1e-3)
        assert close.any(), f"release detection {row} has no counterpart"
        free[np.flatnonzero(close)[0]] = False


def test_windows_top_k_and_fusion_match_the_release(reference):
    case, post = reference["cases"]["thumos-like"], reference["postprocess"]
    model = imported("thumos-like", case, topk=post["topk"], test_overlap=post["test_overlap"]).eval()
    video = post["video"].float()[None]
    length = video.shape[-1]
    padded = torch.cat([video, torch.zeros(1, video.shape[1], 6)], -1)  # eval inputs may carry padding
    out = model(padded, torch.arange(length + 6)[None] < length)
    assert out.windows == [[tuple(s) for s in post["slices"].tolist()]]
    for w in range(len(out.windows[0])):
        scores, labels, bounds = window_top_k(out.logits[-1][w], out.segments[-1][w], out.actionness[w], post["topk"])
        ours = torch.cat([bounds * post["window_len"], scores[:, None], labels[:, None].float()], 1)
        theirs = torch.cat([post["window_segments"][w], post["window_scores"][w][:, None],
                            post["window_labels"][w][:, None].float()], 1)
        _match_rows(ours.detach().double().numpy(), theirs.double().numpy())
    meta = {"video_id": "v", "fps": 1.0, "feat_stride": 1, "feat_num_frames": 2, "duration": 1000.0}
    (dets,) = model.postprocess(out, [meta])
    assert np.all(np.diff(dets.scores) <= 0)
    # seconds = steps + 1 here; we clip to the video (the release keeps segments past its ends)
    theirs = post["fused"].numpy().copy()
    theirs[:, :2] = np.clip(theirs[:, :2] + 1.0, 0.0, meta["duration"])
    assert (theirs[:, 0] < 0.5).any()  # some segment did start before the video
    ours = np.concatenate([dets.segments, dets.scores[:, None], dets.labels[:, None]], 1)
    _match_rows(ours, theirs)


def test_release_keys_map_onto_ours(reference):
    for name in CASES:
        case = reference["cases"][name]
        model = TadTR(release_spec(name, case))
        mapped = convert_release_state_dict({"module." + k: v for k, v in release_state(case).items()}, model)
        assert set(mapped) == set(model.state_dict())
        assert all(mapped[k].shape == v.shape for k, v in model.state_dict().items())


def test_fresh_model_has_the_release_initialisation():
    model = TadTR(TadTRSpec(input_dim=16, num_classes=3, window=32, hidden_dim=32, num_heads=4, enc_layers=1,
                            dec_layers=2, dim_feedforward=64, num_queries=5))
    attn = model.transformer.encoder.layers[0].self_attn
    assert torch.all(attn.sampling_offsets.weight == 0) and torch.all(attn.attention_weights.weight == 0)
    assert torch.allclose(attn.sampling_offsets.bias.view(4, 4)[0], torch.tensor([1.0, 2, 3, 4]))
    assert torch.allclose(model.class_embed[1].bias, torch.full((3,), -4.59512), atol=1e-4)
    assert torch.all(model.segment_embed[0].layers[-1].weight == 0)
    assert model.segment_embed[0].layers[-1].bias.tolist() == [0.0, -2.0]
    assert model.segment_embed[1].layers[-1].bias.tolist() == [0.0, 0.0]


def tiny_config(**tadtr):
    section = {"hidden_dim": 32, "num_heads": 4, "enc_layers": 1, "dec_layers": 2, "dim_feedforward": 64,
               "num_queries": 8, "dropout": 0.0}
    section.update(tadtr)
    return build_config({"data": {"input_dim": 16, "max_seq_len": 32}, "model": {"name": "tadtr"},
                         "tadtr": section, "train": {"learning_rate": 1e-3}})


def test_model_name_tadtr_builds_a_detector_whose_loss_drops():
    torch.manual_seed(0)
    cfg = tiny_config()
    assert cfg.model.backbone == "deformable"
    model = build_model(cfg, 3)
    assert isinstance(model, TadTR) and isinstance(model, Detector)
    groups = model.param_groups(1e-4)
    assert all(g["weight_decay"] == 1e-4 for g in groups) and groups[1]["lr"] == pytest.approx(1e-4)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    optimizer = torch.optim.AdamW(groups, lr=1e-3)
    feats = torch.randn(4, 16, 32)
    gt = [torch.tensor([[3.0, 10.0]]), torch.tensor([[12.0, 30.0], [1.0, 5.0]]), torch.tensor([[0.0, 31.0]]),
          torch.tensor([[20.0, 25.0]])]
    labels = [torch.tensor([0]), torch.tensor([1, 2]), torch.tensor([2]), torch.tensor([1])]
    for segs, lab, x in zip(gt, labels, feats):  # the classes are visible in the features
        for (s, e), c in zip(segs.long().tolist(), lab.tolist()):
            x[c, s:e] += 3.0
    masks = torch.ones(4, 32, dtype=torch.bool)
    model.train()
    history = []
    for _ in range(40):
        loss = model.losses(model(feats, masks), gt, labels)["final_loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    assert history[-1] < 0.6 * history[0], history[::8]
    model.eval()
    out = model(feats[:1, :, :20], masks[:1, :20])
    metas = [{"video_id": "a", "fps": 30.0, "feat_stride": 4, "feat_num_frames": 16, "duration": 3.0}]
    (dets,) = model.postprocess(out, metas)
    assert len(dets) > 0 and dets.segments.min() >= 0 and dets.segments.max() <= 3.0


def test_bad_inputs_get_clear_errors():
    model = build_model(tiny_config(), 3)
    masks = torch.ones(2, 32, dtype=torch.bool)
    with pytest.raises(ValueError, match="8 channels but the detector expects 16"):
        model(torch.randn(2, 8, 32), masks)
    with pytest.raises(ValueError, match="B x C x L features and B x L masks"):
        model(torch.randn(2, 16, 32), masks[:, :31])
    with pytest.raises(ValueError, match="one window of 32 steps"):
        model.train()(torch.randn(2, 16, 40), torch.ones(2, 40, dtype=torch.bool))
    eval_out = model.eval()(torch.randn(1, 16, 80), torch.ones(1, 80, dtype=torch.bool))
    with pytest.raises(ValueError, match="training-mode output with one window per video"):
        model.losses(eval_out, [torch.zeros(0, 2)], [torch.zeros(0, dtype=torch.long)])
    with pytest.raises(ValueError, match="metas"):
        model.postprocess(eval_out, [])
    with pytest.raises(RgbtadError, match="multiple of 32"):
        build_model(tiny_config(hidden_dim=48), 3)
    with pytest.raises(RgbtadError, match="tadtr.activation"):
        tiny_config(activation="swish")
    with pytest.raises(RgbtadError, match="tadtr.test_overlap"):
        tiny_config(test_overlap=1.0)
    cfg = tiny_config()  # conventional and decomposed students exist for TadTR (tests/test_distill_tadtr.py)
    with pytest.raises(RgbtadError, match="distill.method' 'c2ms'"):
        build_config({**cfg.to_dict(), "distill": {**cfg.to_dict()["distill"], "method": "c2ms"}})


def test_windows_without_ground_truth_train():
    model = build_model(tiny_config(), 2).train()
    out = model(torch.randn(2, 16, 32), torch.ones(2, 32, dtype=torch.bool))
    losses = model.losses(out, [torch.zeros(0, 2), torch.zeros(0, 2)], [torch.zeros(0, dtype=torch.long)] * 2)
    assert torch.isfinite(losses["final_loss"]) and losses["loss_segments"].item() == 0.0
    assert model.loss_normalizer == 1.0
    assert dataclasses.is_dataclass(out)


def test_trains_and_infers_through_the_rgbtad_commands(tmp_path, capsys):
    """model.name tadtr: the same trainer, run directory and `rgbtad infer` as ActionFormer;
    evaluation cuts the whole videos (120-240 steps) into windows of max_seq_len."""
    import json

    from rgbtad.cli import main as cli_main
    from rgbtad.synthetic.toy_features import make_toy_features
    from rgbtad.training.trainer import train

    toy = tmp_path / "toy"
    make_toy_features(toy, num_train=8, num_test=4, num_classes=3, dim=16, seed=3, min_len=120, max_len=240)
    cfg = tiny_config()
    cfg.data.annotations, cfg.data.features = str(toy / "annotations.json"), str(toy / "features")
    cfg.data.train_split, cfg.data.val_split, cfg.data.crop_ratio = "train", "test", None
    cfg.train.batch_size, cfg.train.epochs, cfg.train.warmup_epochs, cfg.train.ema_decay = 4, 3, 0, 0.0
    summary = train(cfg, tmp_path / "run", device="cpu", progress=False)
    header = (tmp_path / "run" / "logs" / "train.csv").read_text().splitlines()[0]
    assert "loss_actionness" in header and "loss_ce_0" in header
    pred, metrics = tmp_path / "pred.json", tmp_path / "metrics.json"
    ann = toy / "annotations.json"
    assert cli_main(["infer", str(tmp_path / "run"), "--features", str(toy / "features"), "--ann", str(ann),
                     "--split", "test", "--out", str(pred)]) == 0
    assert cli_main(["evaluate", "--gt", str(ann), "--pred", str(pred), "--split", "test",
                     "--json", str(metrics)]) == 0
    assert json.loads(metrics.read_text())["average_mAP"] == pytest.approx(summary["average_mAP"], abs=1e-9)
    capsys.readouterr()


@pytest.mark.parametrize("name", CASES)
def test_seeded_initialisation_is_the_releases(reference, name):
    """Under one seed our construction draws the release's initial weights (same creation
    order, cloned layers, the same init rules)."""
    case = reference["cases"][name]
    torch.manual_seed(case["seed"])
    model = TadTR(release_spec(name, case))
    fresh = {key: torch.stack([v.double().sum(), v.double().abs().sum()]) for key, v in model.state_dict().items()}
    sums = {key: torch.tensor(v, dtype=torch.float64) for key, v in case["init_sums"].items()}
    mapped = convert_release_state_dict(sums, model)
    assert set(mapped) == set(fresh)
    for key, expected in mapped.items():
        assert torch.allclose(fresh[key], expected, rtol=1e-6, atol=1e-6), key
