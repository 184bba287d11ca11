"""Snippet-backbone training and distillation (`rgbtad train-backbone`) on the synthetic benchmark."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from rgbtad.apps.demo_backbone_stages import backbone_config
from rgbtad.apps.demo_plan import BackboneSpec, DemoSettings, demo_backbones
from rgbtad.backbones import create_backbone
from rgbtad.cli import main as cli_main
from rgbtad.core.errors import RgbtadError
from rgbtad.synthetic.generate import generate_benchmark
from rgbtad.training.backbone_config import build_backbone_config, load_backbone_config
from rgbtad.training.backbone_task import BackboneTask
from rgbtad.training.backbones import train_backbone
from rgbtad.training.snippet_data import SnippetStore, collect_snippets, snippet_label
from rgbtad.video.snippets import SnippetSpec

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _config(annotations, *, modality="rgb", fps=8.0, size=32, frames=4, stride=2, flow_method="dis",
            videos=None, **values):
    """A backbone config with the snippet settings of these tests (4 frames every 2, DIS flow)."""
    snippets = {"modality": modality, "frames": frames, "stride": stride, "fps": fps, "size": size,
                "flow_method": flow_method}
    base = {"annotations": str(annotations), "videos": str(videos or annotations.parent / "videos"),
            "snippets": snippets, "threads": 1}
    return build_backbone_config({**base, **values})


def _train(annotations, out, **options):
    return train_backbone(_config(annotations, **options), out, progress=False)


def _state(path):
    return torch.load(path, weights_only=True)


def _equal_states(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("clip_bench")
    return generate_benchmark(out, num_train=12, num_test=2, seed=1, size=32, fps=8.0,
                              min_duration=8.0, max_duration=12.0, progress=False)


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def test_snippet_label_rule():
    segs = [(2.0, 4.0, 3), (6.0, 6.5, 1)]
    fps, n = 10.0, 8
    assert snippet_label(25, n, fps, segs, 9) == 3        # [2.5, 3.3) inside the instance
    assert snippet_label(0, n, fps, segs, 9) == 9         # [0, 0.8) touches nothing: background
    assert snippet_label(15, n, fps, segs, 9) is None     # [1.5, 2.3): centre outside, boundary
    assert snippet_label(58, n, fps, segs, 9) == 1        # short instance inside a longer snippet
    assert snippet_label(64, n, fps, segs, 9) is None     # [6.4, 7.2): centre after the instance


def test_rgb_training_learns_and_writes_a_backbone_run(tiny, tmp_path):
    run = tmp_path / "rgb"
    result = _train(tiny, run, epochs=4, per_class=24, batch_size=32, lr=4e-3, val_subset="train", seed=0)
    assert len(result.class_names) == 13 and result.class_names[-1] == "background"
    chance = 1.0 / len(result.class_names)
    # it learns: training loss falls and eval-mode accuracy on the (training) snippets is well
    # above chance
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert result.val["balanced_accuracy"] > 2.5 * chance
    # the run directory's layout
    for name in ("config.yaml", "backbone.pt", "head.pt", "summary.json", "checkpoints/last.pt",
                 "logs/train.csv", "logs/val.csv"):
        assert (run / name).is_file(), name
    with (run / "logs" / "val.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["epoch"] for r in rows] == ["3"] and float(rows[0]["balanced_accuracy"]) == result.val[
        "balanced_accuracy"]
    # the weights are a native state dict that the backbone factory loads
    net = create_backbone("tsm_tiny", "rgb", weights=run / "backbone.pt")
    saved = _state(run / "backbone.pt")
    assert set(saved) == set(net.state_dict())
    assert _equal_states(net.state_dict(), saved)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["settings"]["snippets"]["modality"] == "rgb" and summary["val"]["per_class"]
    assert [row["epoch"] for row in summary["history"]] == [1, 2, 3, 4] and summary["class_names"] == result.class_names
    assert _state(run / "head.pt")["weight"].shape == (13, net.feature_dim)
    # the config reads back as it was
    assert load_backbone_config(run / "config.yaml").to_dict() == _config(
        tiny, epochs=4, per_class=24, batch_size=32, lr=4e-3, val_subset="train", seed=0).to_dict()

    # a second training into the same folder is refused, changing nothing
    mtime = (run / "backbone.pt").stat().st_mtime_ns
    with pytest.raises(RgbtadError, match="already holds a run .*--resume .*--overwrite"):
        _train(tiny, run, epochs=4, per_class=24, batch_size=32, seed=0)
    assert (run / "backbone.pt").stat().st_mtime_ns == mtime


def test_training_is_deterministic(tiny, tmp_path):
    kwargs = dict(modality="tg", frames=3, epochs=1, per_class=4, batch_size=16, seed=5)
    _train(tiny, tmp_path / "a", **kwargs)
    _train(tiny, tmp_path / "b", **kwargs)
    assert _equal_states(_state(tmp_path / "a" / "backbone.pt"), _state(tmp_path / "b" / "backbone.pt"))


def test_flow_training_with_stored_flow_matches_computed(tiny, tmp_path):
    from rgbtad.motion.storage import compute_motion

    videos = sorted((tiny.parent / "videos").glob("synth_train_*.mp4"))
    flow_dir = tmp_path / "flow"
    compute_motion(videos, flow_dir, method="dis", fps=8.0, size=32)
    kwargs = dict(modality="flow", flow_method="dis", frames=4, epochs=1, per_class=4, batch_size=16, seed=2)
    stored = _train(tiny, tmp_path / "s", flow_dir=str(flow_dir), **kwargs)
    computed = _train(tiny, tmp_path / "c", **kwargs)
    assert stored.history == computed.history
    net = create_backbone("tsm_tiny", "flow", weights=stored.weights)
    x = torch.zeros(1, 2, 4, 32, 32)
    assert net(x).shape == (1, net.feature_dim)


def test_user_errors(tiny, tmp_path):
    with pytest.raises(RgbtadError, match="snippets.*modality"):
        _config(tiny, modality="depth")
    with pytest.raises(RgbtadError, match="video folder"):
        _train(tiny, tmp_path / "x", videos=tmp_path / "nowhere")
    with pytest.raises(RgbtadError, match="subset"):
        _train(tiny, tmp_path / "x", subset="validation")
    with pytest.raises(RgbtadError, match="unknown config key 'per_clas' \\(did you mean 'per_class'\\?\\)"):
        _config(tiny, per_clas=3)
    with pytest.raises(RgbtadError, match="unknown config key 'snippets.frame' \\(did you mean 'snippets.frames'"):
        build_backbone_config({"annotations": "a", "videos": "v", "snippets": {"frame": 3}})
    with pytest.raises(RgbtadError, match="nowhere: flow folder not found"):
        _train(tiny, tmp_path / "x", modality="flow", flow_dir=str(tmp_path / "nowhere"))
    assert not (tmp_path / "x").exists()
    # a config file's errors name the file
    path = tmp_path / "bad.yaml"
    path.write_text("annotations: a.json\nvideos: v\nepochs: 0\n")
    with pytest.raises(RgbtadError, match=f"{path}: config key 'epochs' must be positive"):
        load_backbone_config(path)


def test_overrides_reach_the_snippet_section_and_are_checked_by_it():
    cfg = build_backbone_config({"annotations": "a.json", "videos": "v", "snippets": {"modality": "flow"}},
                                ["snippets.frames=6", "snippets.size=[48, 32]", "distill.temperature=4"])
    assert cfg.snippets == SnippetSpec(modality="flow", frames=6, size=(48, 32))
    assert cfg.distill.temperature == 4.0 and cfg.total_epochs == 10  # flow's default
    with pytest.raises(RgbtadError, match="config section 'snippets': invalid --snippet-frames 0"):
        build_backbone_config({"annotations": "a.json", "videos": "v"}, ["snippets.frames=0"])
    with pytest.raises(RgbtadError, match="config key 'snippets.fps': 'fast' is not a valid float"):
        build_backbone_config({"annotations": "a.json", "videos": "v"}, ["snippets.fps=fast"])


def test_snippet_kd_terms():
    from rgbtad.distill.losses import snippet_feature_loss, softmax_kd_loss

    torch.manual_seed(0)
    z = torch.randn(5, 7)
    assert softmax_kd_loss(z, z, 2.0).abs() < 1e-6  # nothing to learn from a teacher it matches
    other = torch.randn(5, 7)
    t = 3.0
    expected = (torch.softmax(other / t, 1) * (torch.log_softmax(other / t, 1) - torch.log_softmax(z / t, 1))
                ).sum(1).mean() * t * t
    assert torch.allclose(softmax_kd_loss(z, other, t), expected, atol=1e-6)
    f, g = torch.randn(4, 8), torch.randn(4, 8)
    assert torch.allclose(snippet_feature_loss(f, g), ((f - g) ** 2).mean())


def _teacher_agreement(student_dir: Path, teacher_dir: Path, annotations: Path) -> tuple[float, float]:
    """KL(teacher ‖ student's motion half), averaged, and the share of snippets where their top
    classes agree, over the labelled train snippets (every other frame, un-augmented)."""
    import torch.nn.functional as F

    ann_videos = annotations.parent / "videos"
    from rgbtad.data.annotations import load_annotations

    ann = load_annotations(annotations)
    outputs = []
    for run in (teacher_dir, student_dir):
        cfg = load_backbone_config(run / "config.yaml")
        net = create_backbone("tsm_tiny", cfg.modality, weights=run / "backbone.pt").eval()
        head_state = _state(run / "head.pt")
        head = torch.nn.Linear(head_state["weight"].shape[1], head_state["weight"].shape[0])
        head.load_state_dict(head_state)
        store = SnippetStore(cfg.snippets, net.input_mean, net.input_std)
        split = collect_snippets(ann, "train", ann_videos, store, flow_dir=None, start_step=2, progress=False,
                                 desc="")
        items = [it for it, _ in split.items()]
        with torch.no_grad():
            features = torch.cat([net(store.batch(items[i:i + 64])) for i in range(0, len(items), 64)])
            outputs.append(head(features[:, -head.in_features:]))  # the student's motion half
    teacher, student = outputs
    kl = float(F.kl_div(F.log_softmax(student, 1), F.softmax(teacher, 1), reduction="batchmean"))
    return kl, float((student.argmax(1) == teacher.argmax(1)).float().mean())


def test_rgb_backbone_distilled_from_a_motion_backbone(tiny, tmp_path):
    common = dict(per_class=16, batch_size=16, val_subset="test")
    teacher = _train(tiny, tmp_path / "tg", modality="tg", epochs=3, seed=0, **common)
    distill = {"teacher": str(teacher.path), "mode": "decomposed"}
    decomposed = _train(tiny, tmp_path / "dec", epochs=3, seed=3, distill=distill, **common)
    # the same student with the teacher's terms weighted 0: its motion half learns nothing
    untaught = _train(tiny, tmp_path / "dec_w0", epochs=3, seed=3,
                      distill={**distill, "weight": 0.0, "mimic_weight": 0.0}, **common)
    # distillation makes the motion half reproduce the teacher (measured here: KL 0.40 against
    # 0.98, top-class agreement 73 % against 29 %)
    taught = _teacher_agreement(decomposed.path, teacher.path, tiny)
    untaught = _teacher_agreement(untaught.path, teacher.path, tiny)
    assert taught[0] < 0.6 * untaught[0] and taught[1] > untaught[1] + 0.2, (taught, untaught)

    no_mimic = _train(tiny, tmp_path / "dec0", epochs=1, seed=3, per_class=4, batch_size=16,
                      distill={**distill, "mimic_weight": 0.0})
    conventional = _train(tiny, tmp_path / "conv", epochs=1, seed=3, per_class=4, batch_size=16,
                          distill={**distill, "mode": "conventional"})
    # the feature-mimic regressor is a training device only: nothing of it is saved
    assert set(_state(decomposed.weights)) == set(_state(no_mimic.weights))
    assert "adapter.weight" in torch.load(tmp_path / "dec" / "checkpoints" / "last.pt", weights_only=False)["model"]
    # decomposed: one classifier shared by the two halves of the feature; the extracted
    # feature (loadable by the backbone factory) keeps its full width
    net = create_backbone("tsm_tiny", "rgb", weights=decomposed.weights)
    assert _state(decomposed.head)["weight"].shape == (13, net.feature_dim // 2)
    assert set(decomposed.val["branches"]) == {"appearance", "motion"}
    summary = decomposed.summary
    assert summary["settings"]["distill"]["teacher"] == str(teacher.path.resolve())
    assert summary["settings"]["distill"]["mode"] == "decomposed"
    assert _state(conventional.head)["weight"].shape == (13, net.feature_dim)
    with (tmp_path / "dec" / "logs" / "train.csv").open() as handle:
        assert csv.DictReader(handle).fieldnames == ["epoch", "step", "lr", "final_loss", "cls_loss", "kd_loss",
                                                     "mimic_loss"]


def test_distillation_refuses_a_teacher_of_other_snippets(tiny, tmp_path):
    teacher = _train(tiny, tmp_path / "tg", modality="tg", epochs=1, per_class=2)
    with pytest.raises(RgbtadError, match="teacher trained on other snippets: snippet_frames 4"):
        _train(tiny, tmp_path / "x", frames=6, epochs=1, per_class=2, distill={"teacher": str(teacher.path)})
    with pytest.raises(RgbtadError, match="distill mode"):
        _config(tiny, distill={"teacher": str(teacher.path), "mode": "both"})
    with pytest.raises(RgbtadError, match="not a finished backbone run"):
        _train(tiny, tmp_path / "x", epochs=1, per_class=2, distill={"teacher": str(tmp_path)})
    assert not (tmp_path / "x").exists()


def test_training_can_start_from_a_trained_backbone(tiny, tmp_path):
    common = dict(per_class=4, batch_size=16)
    start = _train(tiny, tmp_path / "rgb", epochs=1, seed=0, **common)
    # a learning rate of zero leaves every weight where it started: the given backbone's
    tuned = _train(tiny, tmp_path / "tuned", epochs=1, seed=5, lr=0.0, init_from=str(start.path), **common)
    before, after = _state(start.weights), _state(tuned.weights)
    conv_weights = [k for k in before if k.endswith("conv.weight")]
    assert conv_weights and all(torch.equal(before[k], after[k]) for k in conv_weights)
    summary = tuned.summary
    assert summary["settings"]["init_from"] == str(start.path.resolve())
    tg = _train(tiny, tmp_path / "tg", modality="tg", epochs=1, seed=0, **common)
    with pytest.raises(RgbtadError, match="other architecture: modality 'tg'"):
        _train(tiny, tmp_path / "x", epochs=1, init_from=str(tg.path), **common)


def test_resume_continues_exactly(tiny, tmp_path, monkeypatch):
    """An interrupted training resumed with --resume ends with the weights of one that was
    never interrupted, bit for bit (sampling, augmentation, dropout, optimizer, schedule)."""
    cfg = _config(tiny, epochs=3, per_class=6, batch_size=16, seed=4, val_subset="test")
    whole = train_backbone(cfg, tmp_path / "whole", progress=False)

    batches = BackboneTask.batches

    def interrupted(self, epoch):
        if epoch == 2:
            raise KeyboardInterrupt  # as Ctrl-C during the third epoch
        yield from batches(self, epoch)

    monkeypatch.setattr(BackboneTask, "batches", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_backbone(cfg, tmp_path / "cut", progress=False)
    monkeypatch.undo()
    cut = tmp_path / "cut"
    assert (cut / "checkpoints" / "last.pt").is_file() and not (cut / "summary.json").exists()
    with pytest.raises(RgbtadError, match="already holds a run"):
        train_backbone(cfg, cut, progress=False)
    changed = _config(tiny, epochs=3, per_class=6, batch_size=16, seed=5, val_subset="test")
    with pytest.raises(RgbtadError, match="--resume with a different config \\(changed: seed\\)"):
        train_backbone(changed, cut, resume=True, progress=False)

    resumed = train_backbone(cfg, cut, resume=True, progress=False)
    for name in ("backbone.pt", "head.pt"):
        assert _equal_states(_state(tmp_path / "whole" / name), _state(cut / name)), name
    assert resumed.history == whole.history and resumed.val == whole.val
    assert json.loads((cut / "summary.json").read_text())["resumed_after_epoch"] == 2
    # the logs hold each step once
    with (cut / "logs" / "train.csv").open() as handle:
        steps = [int(r["step"]) for r in csv.DictReader(handle)]
    with (tmp_path / "whole" / "logs" / "train.csv").open() as handle:
        assert steps == [int(r["step"]) for r in csv.DictReader(handle)]


def test_train_backbone_command_end_to_end(tiny, tmp_path, capsys):
    config = tmp_path / "rgb.yaml"
    config.write_text(yaml.safe_dump({
        "annotations": str(tiny), "videos": str(tiny.parent / "videos"), "threads": 1,
        "snippets": {"modality": "rgb", "frames": 4, "stride": 4, "fps": 8.0, "size": 32},
        "epochs": 1, "per_class": 4, "batch_size": 16, "val_subset": "test"}))
    run = tmp_path / "run"
    assert cli_main(["train-backbone", str(config), "--out", str(run), "--set", "seed=2",
                     "--precision", "fp32"]) == 0
    out = capsys.readouterr().out
    assert "snippet accuracy" in out and str(run) in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["settings"]["seed"] == 2 and summary["settings"]["precision"] == "fp32"
    # refused without --resume / --overwrite; one line naming the folder
    assert cli_main(["train-backbone", str(config), "--out", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{run}: already holds a run" in err
    assert cli_main(["train-backbone", str(config), "--out", str(run), "--set", "seed=2", "--precision", "fp32",
                     "--resume"]) == 0
    capsys.readouterr()
    # bad input: one line naming the file
    bad = tmp_path / "bad.yaml"
    bad.write_text("annotations: a.json\nvideos: v\nbatch_sise: 3\n")
    assert cli_main(["train-backbone", str(bad), "--out", str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"rgbtad train-backbone: error: {bad}: unknown config key 'batch_sise' "
                   "(did you mean 'batch_size'?)")
    # the weights go to feature extraction as they are
    features = tmp_path / "features"
    video = sorted((tiny.parent / "videos").glob("synth_test_*.mp4"))[0]
    assert cli_main(["extract", str(video), "--backbone", "tsm_tiny", "--weights", str(run / "backbone.pt"),
                     "--snippet-frames", "4", "--stride", "4", "--fps", "8", "--size", "32",
                     "--out", str(features)]) == 0
    feats = np.load(features / f"{video.stem}.npy")
    assert feats.ndim == 2 and np.isfinite(feats).all()


@pytest.mark.parametrize("name, spec", [
    ("rgb", BackboneSpec("rgb", "rgb")),
    ("flow", BackboneSpec("flow", "flow")),
    ("decomposed_kd", next(b for b in demo_backbones() if b.name == "rgb_kd")),
])
def test_shipped_configs_are_what_the_demo_trains(name, spec):
    shipped = load_backbone_config(CONFIGS / f"backbone_synthetic_{name}.yaml")
    demo = backbone_config(spec, Path("demo_out/data/annotations.json"), Path("demo_out"), DemoSettings(), 0, "auto")
    assert shipped.to_dict() == demo.to_dict()
    assert shipped.snippets == DemoSettings().snippets(spec.modality).with_(stride=DemoSettings().val_stride)
    assert isinstance(shipped.snippets, SnippetSpec)
