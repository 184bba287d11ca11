"""C2MS-Net: the Rgb2Flow hallucinator, the depthwise-separable encoder, the stage presets,
initialisation from the teacher, the three stages trained in turn on toy features, and
RGB-only inference without the teacher or any flow features."""

import csv
import json
import math
import shutil

import numpy as np
import pytest
import torch

from rgbtad.cli import main as cli_main
from rgbtad.config import build_config, load_config, save_config
from rgbtad.core.errors import RgbtadError
from rgbtad.detection import build_detector
from rgbtad.distill import C2MSStudent, FrozenTeacher, build_model
from rgbtad.distill.c2ms import Rgb2Flow
from rgbtad.features.paired import PairedFeatureStore
from rgbtad.runs.run_dir import load_run
from rgbtad.synthetic.toy_features import make_toy_features
from rgbtad.training.trainer import train

TINY = {"embd_dim": 32, "fpn_dim": 32, "head_dim": 32, "n_head": 2, "n_mha_win_size": 9,
        "arch": [2, 1, 3], "regression_range": [[0, 4], [4, 8], [8, 16], [16, 10000]]}
RGB, FLOW, LENGTH = 12, 8, 128


def student_cfg(backbone="conv", **distill):
    values = {"method": "c2ms", "hallucinate_dim": FLOW, "teacher_input_dim": RGB + FLOW}
    values.update(distill)
    return build_config({"data": {"input_dim": RGB, "max_seq_len": LENGTH},
                         "model": {**TINY, "backbone": backbone}, "train": {"droppath": 0.0},
                         "distill": values})


def two_stream_teacher(backbone="conv"):
    cfg = build_config({"data": {"input_dim": RGB + FLOW, "max_seq_len": LENGTH},
                        "model": {**TINY, "backbone": backbone}, "train": {"droppath": 0.0}})
    torch.manual_seed(1)
    return FrozenTeacher(build_detector(cfg, 3), "teacher_run", RGB + FLOW, cfg.model.fpn_dim)


def batch(seed=0):
    generator = torch.Generator().manual_seed(seed)
    feats = torch.randn(2, 2 * RGB + FLOW, LENGTH, generator=generator)  # [student | teacher]
    masks = torch.arange(LENGTH)[None] < torch.tensor([[100], [LENGTH]])
    segments = [torch.tensor([[10.0, 30.0]]), torch.tensor([[5.0, 20.0], [50.0, 90.0]])]
    labels = [torch.tensor([0]), torch.tensor([1, 2])]
    return feats * masks[:, None], masks, segments, labels


def train_forward(model, feats, masks):
    """The training forward on a `batch()`: its teacher channels are the teacher_feats input."""
    return model(feats[:, :RGB], masks, teacher_feats=feats[:, RGB:])


def test_rgb2flow_shapes_and_masking():
    torch.manual_seed(0)
    hallucinator = Rgb2Flow(RGB, FLOW)
    x = torch.randn(2, RGB, 32)
    mask = (torch.arange(32)[None] < torch.tensor([[20], [32]])).unsqueeze(1)
    flow = hallucinator(x * mask, mask)
    assert flow.shape == (2, FLOW, 32)
    assert (flow >= 0).all() and flow[1].gt(0).any()
    assert (flow[0, :, 20:] == 0).all()  # padded steps stay empty


def test_hallucination_loss_ignores_padding_and_inference_reads_rgb_only():
    torch.manual_seed(0)
    model = build_model(student_cfg(), 3)
    model.attach_teacher(two_stream_teacher())
    feats, masks, segments, labels = batch()
    losses = model.train().losses(train_forward(model, feats, masks), segments, labels)
    assert list(losses) == ["cls_loss", "reg_loss", "input_loss", "kd_cls_loss", "kd_reg_loss", "final_loss"]
    assert all(torch.isfinite(v) for v in losses.values())
    garbage = feats.clone()
    garbage[0, 2 * RGB:, 100:] = 50.0  # the true flow on the first video's padded steps
    out = train_forward(model, garbage, masks)
    assert torch.equal(model._teacher_terms(out)["input_loss"], losses["input_loss"])
    model.teacher = None  # eval: RGB channels in, no teacher needed
    pred = model.eval()(feats[:, :RGB], masks)
    assert pred.cls_logits[0].shape == (2, LENGTH, 3)
    with pytest.raises(ValueError, match="student-only"):
        model(feats, masks)


def test_conv_dw_is_smaller_and_keeps_standard_heads():
    def count(module):
        return sum(p.numel() for p in module.parameters())

    sizes = {}
    for backbone in ("conv", "conv_dw"):
        cfg = build_config({"data": {"input_dim": 64, "max_seq_len": LENGTH}, "model": {**TINY, "backbone": backbone}})
        torch.manual_seed(0)
        model = build_detector(cfg, 3)
        out = model(torch.randn(1, 64, LENGTH), torch.ones(1, LENGTH, dtype=torch.bool))
        assert [x.shape for x in out.cls_logits] == [(1, LENGTH // 2 ** i, 3) for i in range(4)]
        sizes[backbone] = {part: count(getattr(model, part)) for part in ("embed", "encoder", "cls_head", "reg_head")}
    assert sizes["conv_dw"]["encoder"] < sizes["conv"]["encoder"] / 2
    assert sizes["conv_dw"]["embed"] < sizes["conv"]["embed"]
    assert sizes["conv_dw"]["cls_head"] == sizes["conv"]["cls_head"]
    assert sizes["conv_dw"]["reg_head"] == sizes["conv"]["reg_head"]


def test_stage_presets_and_explicit_keys(tmp_path):
    cfg = student_cfg(c2ms_stage="cross_modal")
    d = cfg.distill
    assert (d.hard_weight, d.input_weight, d.stem_weight, d.kd_reg_weight, d.kd_cls_weight,
            d.temperature, d.init_from_teacher) == (0.4, 3.0, 0.0, 0.6, 0.24, 2.0, True)
    d = student_cfg(c2ms_stage="cross_structure").distill
    assert (d.hard_weight, d.input_weight, d.stem_weight, d.kd_reg_weight, d.kd_cls_weight,
            d.temperature, d.init_from_teacher) == (0.4, 0.0, 0.6, 0.6, 0.024, 2.0, False)
    # explicit keys win, whether in the mapping or in an override
    explicit = build_config({"distill": {"method": "c2ms", "c2ms_stage": "cross_modal", "hard_weight": 1.0}},
                            ["distill.temperature=3"])
    d = explicit.distill
    assert (d.hard_weight, d.temperature, d.kd_cls_weight) == (1.0, 3.0, 0.24)
    # chosen by an override over a full config (every key written out): the preset applies
    full = build_config(student_cfg().to_dict(), ["distill.c2ms_stage=cross_structure"]).distill
    assert (full.hard_weight, full.stem_weight, full.kd_cls_weight) == (0.4, 0.6, 0.024)
    # a saved run config reads back identically
    save_config(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml").to_dict() == cfg.to_dict()
    with pytest.raises(RgbtadError, match="distill.c2ms_stage"):
        build_config({"distill": {"method": "conventional", "c2ms_stage": "cross_modal"}})
    with pytest.raises(RgbtadError, match="distill.teacher_input_dim must be 12 \\+ 8"):
        build_model(student_cfg(teacher_input_dim=RGB), 3)
    with pytest.raises(RgbtadError, match="distill.feat_weight"):
        build_model(student_cfg(feat_weight=1.0), 3)


def test_init_from_teacher_copies_matching_weights():
    teacher = two_stream_teacher()
    torch.manual_seed(0)
    model = build_model(student_cfg(init_from_teacher=True), 3)
    hallucinator = {k: v.clone() for k, v in model.rgb2flow.state_dict().items()}
    model.attach_teacher(teacher)
    own = model.detector.state_dict()
    for key, value in teacher.model.state_dict().items():
        assert torch.equal(own[key], value), key
    for key, value in model.rgb2flow.state_dict().items():
        assert torch.equal(value, hallucinator[key])  # the only new part keeps its own init
    torch.manual_seed(0)
    fresh = build_model(student_cfg(), 3)
    fresh.attach_teacher(teacher)
    assert not torch.equal(fresh.detector.cls_head.logits.weight, teacher.model.cls_head.logits.weight)


# ---------------------------------------------------------------------- the stages, end to end
DIM = 16  # toy "RGB" channels; the "flow" channels are another 16


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """both/: two-stream files (RGB 0:16 | flow 16:32); rgb/: their RGB half alone."""
    root = tmp_path_factory.mktemp("c2ms_toy")
    ann = make_toy_features(root / "toy", num_train=12, num_test=4, num_classes=3, dim=2 * DIM, seed=5,
                            min_len=100, max_len=200)
    (root / "rgb").mkdir()
    shutil.move(root / "toy" / "features", root / "both")
    for path in sorted((root / "both").glob("*.npy")):
        np.save(root / "rgb" / path.name, np.load(path)[:, :DIM])
    return root, ann


def stage_cfg(toy, features, input_dim, backbone="conv", **distill):
    root, ann = toy
    return build_config({
        "data": {"annotations": str(ann), "features": str(root / features), "train_split": "train",
                 "val_split": "test", "input_dim": input_dim, "max_seq_len": 256},
        "model": {**TINY, "backbone": backbone},
        "train": {"batch_size": 4, "epochs": 1, "warmup_epochs": 1, "learning_rate": 2e-3,
                  "init_loss_norm": 20, "ema_decay": 0.9, "droppath": 0.0, "log_every": 1},
        "test": {"max_seg_num": 30},
        "distill": distill,
    })


@pytest.fixture(scope="module")
def stages(toy, tmp_path_factory):
    """Teacher (two-stream transformer) -> stage 1 (two-stream conv) -> stage 2 (conv +
    Rgb2Flow, RGB only) -> stage 3 (conv_dw + Rgb2Flow, RGB only)."""
    root = toy[0]
    runs = {name: tmp_path_factory.mktemp(name) for name in ("teacher", "stage1", "stage2", "stage3")}
    summaries = {"teacher": train(stage_cfg(toy, "both", 2 * DIM, "transformer"), runs["teacher"], device="cpu")}
    configs = {
        "stage1": stage_cfg(toy, "both", 2 * DIM, "conv", method="c2ms", c2ms_stage="cross_structure",
                            teacher_run=str(runs["teacher"]), teacher_input_dim=2 * DIM),
        "stage2": stage_cfg(toy, "rgb", DIM, "conv", method="c2ms", c2ms_stage="cross_modal",
                            teacher_run=str(runs["stage1"]), teacher_features=str(root / "both"),
                            teacher_input_dim=2 * DIM, hallucinate_dim=DIM),
        "stage3": stage_cfg(toy, "rgb", DIM, "conv_dw", method="c2ms", c2ms_stage="cross_structure",
                            teacher_run=str(runs["stage2"]), teacher_input_dim=DIM, hallucinate_dim=DIM),
    }
    for name, cfg in configs.items():
        summaries[name] = train(cfg, runs[name], device="cpu")
    return runs, summaries


@pytest.mark.parametrize("stage, terms", [
    ("stage1", ["stem_loss", "kd_cls_loss", "kd_reg_loss"]),
    ("stage2", ["input_loss", "kd_cls_loss", "kd_reg_loss"]),
    ("stage3", ["stem_loss", "kd_cls_loss", "kd_reg_loss"]),
])
def test_each_stage_trains_and_logs_its_terms(stages, stage, terms):
    runs, summaries = stages
    assert 0.0 <= summaries[stage]["average_mAP"] <= 1.0
    with (runs[stage] / "logs" / "train.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert rows and set(rows[0]) == {"epoch", "step", "lr", "cls_loss", "reg_loss", "final_loss", *terms}
    for row in rows:
        assert all(math.isfinite(float(row[name])) for name in ["final_loss", *terms])
    _, _, model = load_run(runs[stage])
    assert isinstance(model, C2MSStudent) and model.teacher is None
    assert (model.rgb2flow is None) == (stage == "stage1")


def test_rgb_only_student_predicts_without_teacher_or_flow(toy, stages, tmp_path, monkeypatch):
    root, ann = toy
    runs, summaries = stages

    def forbidden(*args, **kwargs):
        raise AssertionError("the teacher path ran at inference")

    monkeypatch.setattr(FrozenTeacher, "__call__", forbidden)
    monkeypatch.setattr("rgbtad.runs.teacher.load_teacher", forbidden)
    monkeypatch.setattr("rgbtad.training.trainer.load_teacher", forbidden)
    monkeypatch.setattr(PairedFeatureStore, "load", forbidden)
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    moved = {runs["stage2"]: hidden / "teacher", root / "both": hidden / "both"}  # teacher + flow features
    for src, dst in moved.items():
        shutil.move(src, dst)
    try:
        pred = tmp_path / "pred.json"
        assert cli_main(["infer", str(runs["stage3"]), "--features", str(root / "rgb"), "--ann", str(ann),
                         "--split", "test", "--out", str(pred)]) == 0
        metrics = tmp_path / "metrics.json"
        assert cli_main(["evaluate", "--gt", str(ann), "--pred", str(pred), "--split", "test",
                         "--json", str(metrics)]) == 0
    finally:
        for src, dst in moved.items():
            shutil.move(dst, src)
    assert json.loads(metrics.read_text())["average_mAP"] == pytest.approx(summaries["stage3"]["average_mAP"],
                                                                           abs=1e-9)
