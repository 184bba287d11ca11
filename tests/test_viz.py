"""Plots: timelines, per-class AP, model comparison, training curves, and the CLI around them.

Images are checked for what can be checked cheaply: a PNG signature, a picture that is not
blank, and the class colours (solid for ground truth, blended with white by score for
detections) present among its pixels.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rgbtad.cli import main
from rgbtad.core.errors import RgbtadError
from rgbtad.data.annotations import Segment
from rgbtad.evaluation.detection import evaluate_detection_files
from rgbtad.viz.metrics_plots import (
    plot_model_comparison,
    plot_per_class_ap,
    plot_training_curves,
    read_log_csv,
)
from rgbtad.viz.timeline import (
    MIN_ALPHA,
    class_colours,
    pack_lanes,
    parse_named_paths,
    plot_timeline,
    plot_video_timeline,
    select_detections,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DPI = 60  # small images keep the tests fast


def load_png(path: Path) -> np.ndarray:
    """RGB pixels (floats in [0, 1]) of a PNG after checking its signature."""
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == PNG_SIGNATURE
    image = imread(path)
    assert image.ndim == 3 and image.shape[0] > 50 and image.shape[1] > 50
    return image[..., :3]


def assert_not_blank(image: np.ndarray) -> None:
    assert image.std() > 0.02
    assert (image.min(axis=2) < 0.9).mean() > 0.005  # some non-white ink


def has_colour(image: np.ndarray, rgb, tol: float = 0.02, min_pixels: int = 20) -> bool:
    close = np.all(np.abs(image - np.asarray(rgb)[None, None, :]) <= tol, axis=2)
    return int(close.sum()) >= min_pixels


def no_temp_files(folder: Path, expected: set[str]) -> None:
    assert {p.name for p in folder.iterdir()} == expected


# ----------------------------------------------------------------------------------------
# Fixtures


def det(label: str, score: float, start: float, end: float) -> dict:
    return {"label": label, "score": score, "segment": [start, end]}


@pytest.fixture()
def files(tmp_path):
    database = {
        "video_a": {"subset": "Test", "duration": 60.0, "fps": 30.0, "annotations": [
            {"label": "Jump", "label_id": 0, "segment": [5.0, 15.0]},
            {"label": "Run", "label_id": 1, "segment": [20.0, 35.0]},
            {"label": "Throw", "label_id": 2, "segment": [40.0, 50.0]},
        ]},
        "video_b": {"subset": "Test", "duration": 30.0, "fps": 30.0, "annotations": [
            {"label": "Run", "label_id": 1, "segment": [2.0, 9.0]},
        ]},
    }
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"database": database}))
    pred1 = tmp_path / "model_one.json"
    pred1.write_text(json.dumps({"results": {
        "video_a": [det("Jump", 0.9, 5.5, 14.0), det("Run", 0.8, 21.0, 33.0), det("Throw", 0.3, 41.0, 52.0),
                    det("Run", 0.05, 0.0, 3.0)],
        "video_b": [det("Run", 0.7, 2.0, 8.0)],
    }}))
    pred2 = tmp_path / "model_two.json"
    pred2.write_text(json.dumps({"results": {
        "video_a": [det("Run", 0.6, 18.0, 30.0), det("Jump", 0.4, 30.0, 40.0)],
    }}))
    return gt, pred1, pred2


# ----------------------------------------------------------------------------------------
# Timeline


def test_timeline_draws_class_colours_and_score_opacity(tmp_path):
    gt = [Segment(5.0, 15.0, "Jump", 0), (20.0, 35.0, "Run"), {"label": "Throw", "segment": [40, 50]}]
    out = tmp_path / "t.png"
    # a lone, low-scoring "Throw" detection away from the (shaded) ground truth: its bar is
    # Throw's colour blended with the white background
    dets = {"strong": [det("Jump", 1.0, 5, 15)], "weak": [det("Throw", 0.2, 51, 59)]}
    written = plot_timeline(gt, dets, duration=60, out_path=out, title="t",
                            class_names=["Jump", "Run", "Throw"], dpi=DPI)
    assert written == out
    image = load_png(out)
    assert_not_blank(image)
    colours = class_colours(["Jump", "Run", "Throw"])
    for name in ("Jump", "Run", "Throw"):
        assert has_colour(image, colours[name]), name  # solid ground-truth bars
    a = MIN_ALPHA + (1 - MIN_ALPHA) * 0.2
    faded = a * np.asarray(colours["Throw"]) + (1 - a) * 1.0  # over the white background
    assert has_colour(image, faded, tol=0.03)
    no_temp_files(tmp_path, {"t.png"})


def test_timeline_colours_follow_the_class_list_and_cover_unknown_labels(tmp_path):
    out = tmp_path / "t.png"
    plot_timeline([(1, 2, "B")], {"m": [det("Zzz", 0.9, 3, 4)]}, duration=None, out_path=out,
                  class_names=["A", "B"], dpi=DPI)
    image = load_png(out)
    colours = class_colours(["A", "B", "Zzz"])
    assert has_colour(image, colours["B"], min_pixels=5)
    assert not has_colour(image, colours["A"], min_pixels=5)  # A is not drawn, nor in the legend


def test_class_colours_are_distinct_for_many_classes():
    names = [f"c{i}" for i in range(200)]
    colours = class_colours(names)
    assert len(colours) == 200 and len(set(colours.values())) == 200
    assert class_colours(["x", "y"])["x"] == class_colours(["x", "y", "z"])["x"]


def test_select_detections_min_score_and_top_k():
    dets = [(i, i + 1, "A", s) for i, s in enumerate([0.1, 0.9, 0.5, 0.7, 0.3])] + [(0, 1, "B", 0.2)]
    picked = select_detections(dets, 0.25, 2)
    assert [d[3] for d in picked] == [0.9, 0.7]  # B is below min_score; A capped at 2
    assert len(select_detections(dets * 5, 0.0, None)) == 10 + 5  # default: 10 per class
    with pytest.raises(RgbtadError, match="top_k"):
        select_detections(dets, 0.0, 0)


def test_pack_lanes_never_overlaps_and_reports_dropped():
    ivs = [(0.0, 10.0, "A", 0.9), (5.0, 8.0, "A", 0.8), (9.0, 12.0, "A", 0.7), (10.0, 11.0, "A", 0.6),
           (1.0, 9.5, "A", 0.5)]
    lanes, dropped = pack_lanes(ivs, 2)
    assert dropped == 1 and sum(map(len, lanes)) == 4
    for lane in lanes:
        for i, x in enumerate(lane):
            for y in lane[i + 1:]:
                assert x[1] <= y[0] or y[1] <= x[0]
    assert lanes[0][0] == ivs[0]  # the best detection takes the top lane


def test_plot_video_timeline_from_files(files, tmp_path):
    gt, pred1, pred2 = files
    out = tmp_path / "figs" / "v.png"
    plot_video_timeline(gt, {"one": pred1, "two": pred2}, "video_a", out, dpi=DPI)
    image = load_png(out)
    assert_not_blank(image)
    colours = class_colours(["Jump", "Run", "Throw"])
    assert all(has_colour(image, colours[n]) for n in colours)
    no_temp_files(out.parent, {"v.png"})


def test_plot_video_timeline_video_missing_from_one_model_gives_an_empty_row(files, tmp_path):
    from rgbtad.data.annotations import load_annotations
    from rgbtad.data.results import read_results_json

    gt, pred1, pred2 = files
    out = tmp_path / "b.png"
    ann = load_annotations(gt)
    plot_video_timeline(ann, {"one": read_results_json(pred1), "two": read_results_json(pred2)},
                        "video_b", out, dpi=DPI)
    assert_not_blank(load_png(out))


def test_unknown_video_names_the_video_and_the_file(files, tmp_path):
    gt, pred1, _ = files
    out = tmp_path / "x.png"
    with pytest.raises(RgbtadError) as err:
        plot_video_timeline(gt, {"one": pred1}, "video_c", out)
    message = str(err.value)
    assert "video_c" in message and str(gt) in message and "\n" not in message
    assert "video_a" in message  # close matches are suggested
    assert not out.exists()
    no_temp_files(tmp_path, {"gt.json", "model_one.json", "model_two.json"})


def test_bad_output_extension_is_a_user_error(tmp_path):
    with pytest.raises(RgbtadError, match="unknown image format"):
        plot_timeline([(0, 1, "A")], {}, duration=2, out_path=tmp_path / "x.nope")
    assert list(tmp_path.iterdir()) == []


def test_failed_save_leaves_nothing_behind(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    def broken(self, *args, **kwargs):
        Path(args[0]).write_bytes(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(RuntimeError):
        plot_timeline([(0, 1, "A")], {}, duration=2, out_path=tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_other_formats_follow_the_extension(tmp_path):
    out = tmp_path / "t.svg"
    plot_timeline([(0, 1, "A")], {"m": [det("A", 0.5, 0, 1)]}, duration=2, out_path=out)
    assert out.read_text().lstrip().startswith("<?xml")


def test_parse_named_paths(tmp_path):
    odd = tmp_path / "a=b.json"
    odd.write_text("{}")
    assert parse_named_paths(["x/p.json", "ours=q.json", str(odd)]) == {
        "p": Path("x/p.json"), "ours": Path("q.json"), "a=b": odd}
    with pytest.raises(RgbtadError, match="used twice"):
        parse_named_paths(["a/p.json", "b/p.json"])
    with pytest.raises(RgbtadError, match="NAME=PATH"):
        parse_named_paths(["=q.json"])


# ----------------------------------------------------------------------------------------
# Metrics plots


@pytest.fixture()
def metrics(files):
    gt, pred1, _ = files
    return evaluate_detection_files(gt, pred1, tiou_thresholds=[0.3, 0.5, 0.7])


@pytest.mark.parametrize("tiou", [None, 0.5])
def test_per_class_ap(metrics, tmp_path, tiou):
    out = tmp_path / "ap.png"
    plot_per_class_ap(metrics, out, tiou=tiou, dpi=DPI)
    image = load_png(out)
    assert_not_blank(image)
    from matplotlib.colors import to_rgb

    assert has_colour(image, to_rgb("tab:blue"))  # the bars
    no_temp_files(tmp_path, {"ap.png", "gt.json", "model_one.json", "model_two.json"})


def test_per_class_ap_unknown_tiou(metrics, tmp_path):
    with pytest.raises(RgbtadError, match=r"tIoU 0.55 was not evaluated \(thresholds: 0.3, 0.5, 0.7\)"):
        plot_per_class_ap(metrics, tmp_path / "ap.png", tiou=0.55)


def test_model_comparison(metrics, tmp_path):
    out = tmp_path / "cmp.png"
    summary = {"one": metrics.to_json(), "two": {"tiou": [0.3, 0.5], "mAP": [0.4, 0.2]},
               "three": metrics}
    plot_model_comparison(summary, out, dpi=DPI)
    image = load_png(out)
    assert_not_blank(image)
    from matplotlib.colors import to_rgb

    assert all(has_colour(image, to_rgb(f"C{i}")) for i in range(3))
    with pytest.raises(RgbtadError, match="model 'bad': missing 'mAP'"):
        plot_model_comparison({"bad": {"tiou": [0.5]}}, out)


def write_logs(folder: Path, steps: int, with_val: bool = True) -> Path:
    logs = folder / "logs"
    logs.mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = ["epoch,step,lr,cls_loss,reg_loss,final_loss,distill_loss"]
    for i in range(steps):
        cls, reg = 1.0 / (i + 1) + 0.05 * rng.random(), 0.5 / (i + 1)
        lines.append(f"{i // 10},{10 * i},0.001,{cls:.4f},{reg:.4f},{cls + reg:.4f},{'' if i % 2 else 0.1}")
    (logs / "train.csv").write_text("\n".join(lines) + "\n")
    if with_val:
        (logs / "val.csv").write_text("epoch,mAP@0.3,mAP@0.5,average_mAP\n0,0.2,0.1,0.15\n1,0.4,0.3,0.35\n")
    return logs / "train.csv"


def test_training_curves(tmp_path):
    long_run = write_logs(tmp_path / "run_a", 50)
    short_run = write_logs(tmp_path / "run_b", 5, with_val=False)
    out = tmp_path / "curves.png"
    plot_training_curves({"a": long_run, "b": tmp_path / "run_b"}, out, dpi=DPI)  # a run dir works too
    image = load_png(out)
    assert_not_blank(image)
    from matplotlib.colors import to_rgb

    assert has_colour(image, to_rgb("C0"), min_pixels=5) and has_colour(image, to_rgb("C1"), min_pixels=5)
    table = read_log_csv(short_run, ("step",))
    assert np.isnan(table["distill_loss"][1]) and table["step"].tolist() == [0, 10, 20, 30, 40]
    # explicit val.csv paths, header-only val.csv (no evaluation yet) is skipped
    empty = tmp_path / "val_empty.csv"
    empty.write_text("epoch,average_mAP\n")
    plot_training_curves({"a": long_run}, out, val_csv_paths={"a": empty}, dpi=DPI)
    assert_not_blank(load_png(out))


def test_training_curves_errors(tmp_path):
    bad = tmp_path / "train.csv"
    bad.write_text("epoch,step,lr,final_loss\n0,0,0.1,oops\n")
    with pytest.raises(RgbtadError, match=r"train.csv: line 2: column 'final_loss' is not a number"):
        plot_training_curves({"x": bad}, tmp_path / "c.png")
    with pytest.raises(RgbtadError, match="log file not found"):
        plot_training_curves({"x": tmp_path / "nope.csv"}, tmp_path / "c.png")
    bad.write_text("epoch,lr,final_loss\n")
    with pytest.raises(RgbtadError, match="missing column"):
        plot_training_curves({"x": bad}, tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


# ----------------------------------------------------------------------------------------
# Command line


def test_cli_plot(files, tmp_path, capsys):
    gt, pred1, pred2 = files
    out = tmp_path / "out" / "timeline.png"
    rc = main(["plot", "--gt", str(gt), "--pred", str(pred1), "--pred", f"other={pred2}",
               "--video", "video_a", "--out", str(out), "--min-score", "0.1", "--top-k", "3"])
    assert rc == 0
    assert str(out) in capsys.readouterr().out
    assert_not_blank(load_png(out))
    no_temp_files(out.parent, {"timeline.png"})


def test_cli_plot_bad_video_is_one_line(files, tmp_path, capsys):
    gt, pred1, _ = files
    out = tmp_path / "timeline.png"
    rc = main(["plot", "--gt", str(gt), "--pred", str(pred1), "--video", "nope", "--out", str(out)])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope" in err[0] and str(gt) in err[0] and err[0].startswith("rgbtad plot: error:")
    assert not out.exists()


def test_cli_evaluate_plot_without_torch(files, tmp_path):
    gt, pred1, _ = files
    out = tmp_path / "ap.png"
    code = ("import sys; from rgbtad.cli import main; rc = main(sys.argv[1:]); "
            "print('TORCH_LOADED' if 'torch' in sys.modules else 'TORCH_ABSENT'); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, "evaluate", "--gt", str(gt), "--pred", str(pred1),
                           "--plot", str(out)], capture_output=True, text=True,
                          timeout=1800)  # a hang guard, not a speed check (loaded machines are slow)
    assert proc.returncode == 0, proc.stderr
    assert "TORCH_ABSENT" in proc.stdout and f"wrote {out}" in proc.stdout
    assert_not_blank(load_png(out))
    no_temp_files(tmp_path, {"ap.png", "gt.json", "model_one.json", "model_two.json"})
