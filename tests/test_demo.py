"""`rgbtad demo --quick` end to end: every stage, the outputs a user reads, and stage reuse."""

import json

import pytest

from rgbtad.apps.demo import (
    DemoSettings, _schedule_rank, demo_backbones, demo_models, demo_verdict, needed_backbones,
)
from rgbtad.cli import main as cli_main
from rgbtad.runs.run_dir import load_run
from rgbtad.core.precision import cpu_model, resolve_precision

MODELS = ["rgb_only", "motion_only", "two_stream", "decomposed_laf"]  # the quick demo's


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert cli_main(["demo", "--quick", "--out", str(out), "--device", "cpu"]) == 0
    return out


def test_quick_demo_shows_the_cost_of_dropping_flow(quick_demo):
    """The quick demo's point: without optical flow the detector is clearly worse (the
    README's seed-0 figures have two_stream 30 points above rgb_only; other CPUs train other
    trajectories, so only the sign is asserted)."""
    models = json.loads((quick_demo / "summary.json").read_text())["models"]
    assert models["two_stream"]["average_mAP"] > models["rgb_only"]["average_mAP"]
    assert models["motion_only"]["average_mAP"] > models["rgb_only"]["average_mAP"]


def test_the_quick_demo_trains_only_what_its_models_need():
    names = [b.name for b in needed_backbones(demo_backbones(), [m for m in demo_models()
                                                                if m.name in DemoSettings.quick().models])]
    assert names == ["rgb", "flow", "rgb_kd"]
    assert [b.name for b in needed_backbones(demo_backbones(), demo_models())] == [
        "rgb", "flow", "rgb_kd_conventional", "rgb_kd"]


def test_verdict_line_says_what_the_figures_mean():
    figures = {"rgb_only": 0.40, "motion_only": 0.60, "two_stream": 0.70, "decomposed_laf": 0.46}
    line = demo_verdict({name: {"average_mAP": v} for name, v in figures.items()})
    assert "+30.0 points" in line and "decomposed_laf, recovers 6.0 points (20 % of the gap)" in line
    figures["decomposed_laf"] = 0.35
    assert "loses 5.0 points" in demo_verdict({name: {"average_mAP": v} for name, v in figures.items()})


def test_quick_demo_writes_summary_report_and_plots(quick_demo):
    summary = json.loads((quick_demo / "summary.json").read_text())
    assert list(summary["models"]) == MODELS
    for name, metrics in summary["models"].items():
        assert metrics["tiou"] == [0.3, 0.4, 0.5, 0.6, 0.7]
        assert len(metrics["mAP"]) == 5
        assert 0.0 <= metrics["average_mAP"] <= 1.0
        assert metrics["average_mAP"] == pytest.approx(sum(metrics["mAP"]) / 5)
    # the figures are those of the written detections
    from rgbtad.evaluation.detection import evaluate_detection_files

    metrics = evaluate_detection_files(quick_demo / "data" / "annotations.json",
                                       quick_demo / "predictions" / "two_stream.json", split="test")
    assert summary["models"]["two_stream"]["average_mAP"] == pytest.approx(metrics.average_mAP, abs=1e-12)
    # the precision auto chose here is recorded with the CPU
    assert summary["precision"] == resolve_precision("auto", "cpu") and summary["cpu"] == cpu_model()
    report = (quick_demo / "report.md").read_text()
    assert f"backbone precision {summary['precision']} on {summary['cpu']}" in report
    for name in MODELS:
        assert f"| {name} |" in report
    assert "## Stage timings" in report and "## Per-class AP" in report
    plots = sorted(p.name for p in (quick_demo / "plots").glob("*.png"))
    assert "models.png" in plots and "training_curves.png" in plots
    assert sum(p.startswith("timeline_") for p in plots) == 3


def test_demo_run_directories_work_with_infer(quick_demo, tmp_path):
    for name in MODELS:
        cfg, classes, model = load_run(quick_demo / "runs" / name)
        assert classes == list(DemoSettings.quick().classes) and not model.training
    pred = tmp_path / "pred.json"
    ann = quick_demo / "data" / "annotations.json"
    assert cli_main(["infer", str(quick_demo / "runs" / "decomposed_laf"), "--features",
                     str(quick_demo / "features" / "rgb_kd"), "--ann", str(ann), "--split", "test",
                     "--out", str(pred)]) == 0
    # the student run reads RGB features only (from its own distilled RGB backbone, which the
    # run directory carries for `rgbtad detect`), and gives the demo's own detections
    assert json.loads(pred.read_text()) == json.loads(
        (quick_demo / "predictions" / "decomposed_laf.json").read_text())
    import torch

    carried = torch.load(quick_demo / "runs" / "decomposed_laf" / "backbone.pt")
    trained = torch.load(quick_demo / "backbones" / "rgb_kd.pt")
    assert carried.keys() == trained.keys() and all(torch.equal(carried[k], trained[k]) for k in trained)
    distilled = json.loads((quick_demo / "backbones" / "rgb_kd.json").read_text())["settings"]["teacher"]
    assert distilled["distill"] == "decomposed" and distilled["weights"].endswith("flow.pt")


def test_second_run_reuses_every_stage(quick_demo):
    outputs = [*(quick_demo / "backbones").glob("*.pt"), *(quick_demo / "features").glob("*/*.npy"),
               *(quick_demo / "runs").glob("*/model.pt"), *(quick_demo / "predictions").glob("*.json")]
    assert len(outputs) > 20
    written = {path: path.stat().st_mtime_ns for path in outputs}
    first = json.loads((quick_demo / "timings.json").read_text())
    assert cli_main(["demo", "--quick", "--out", str(quick_demo), "--device", "cpu"]) == 0
    # nothing is recomputed, and the timings of the run that made the outputs stay
    assert {path: path.stat().st_mtime_ns for path in outputs} == written
    timings = json.loads((quick_demo / "timings.json").read_text())
    assert all(t.get("reused") for stage, t in timings.items() if stage != "report"), timings
    assert all(timings[stage]["seconds"] == first[stage]["seconds"] for stage in first)


def test_students_are_scheduled_after_their_teachers():
    models = demo_models(with_tg=True)
    order = [m.name for m in sorted(models, key=_schedule_rank(models))]
    for m in models:
        if m.teacher is not None:
            assert order.index(m.teacher) < order.index(m.name)
    assert {m.teacher for m in models} - {None} == {"motion_only", "motion_tg"}


def test_demo_refuses_a_folder_with_other_settings(quick_demo, capsys):
    assert cli_main(["demo", "--quick", "--seed", "5", "--out", str(quick_demo)]) == 2
    assert "holds a demo made with other settings" in capsys.readouterr().err
