"""`rgbtad bench` on a short real clip with tiny settings: the JSON layout and its bookkeeping
(no speed is asserted: only that the times were measured within the run)."""

import json
import time

import pytest

from rgbtad.apps.bench import make_bench_video
from rgbtad.apps.bench_pipelines import PIPELINES, flow_pairs_needed, pair_positions, rounds
from rgbtad.apps.bench_report import format_report
from rgbtad.cli import main
from rgbtad.core.precision import cpu_model, resolve_precision
from rgbtad.video.decode import probe

TINY = ["--backbone", "tsm_tiny", "--size", "32", "--snippet-frames", "4", "--stride", "4", "--repeats", "1",
        "--tvl1-pairs", "3", "--detector-width", "16", "--quiet"]


def test_bench_writes_the_documented_json(shared_data, tmp_path, capsys):
    clip = shared_data / "videos" / "mmaction2_part_0.mp4"  # 32 frames, 340x256, 30 fps
    out = tmp_path / "bench.json"
    began = time.perf_counter()
    assert main(["bench", str(clip), "--json", str(out), "--runtime", "torch", *TINY]) == 0
    wall = time.perf_counter() - began
    printed = capsys.readouterr().out
    assert "rgb_only is" in printed and "extrapolated" in printed

    report = json.loads(out.read_text())
    # the file holds what was shown: the table printed is the table of the JSON read back
    assert format_report(report) in printed
    # PyTorch backbones: the precision auto chose for this machine is recorded, with the CPU it ran on
    assert report["settings"]["precision"] == resolve_precision("auto", "cpu")
    assert report["environment"]["cpu"] == cpu_model() and f"backbones in {report['settings']['precision']}" in printed
    assert report["video"]["frames"] == 32 and report["video"]["size"] == [340, 256]
    assert report["video"]["seconds"] == pytest.approx(32 / 30)
    assert set(report["pipelines"]) == set(PIPELINES)
    expected_stages = {
        "rgb_only": {"decode", "rgb_backbone", "detector"},
        "two_stream_tvl1": {"decode", "flow", "rgb_backbone", "flow_backbone", "detector"},
        "two_stream_dis": {"decode", "flow", "rgb_backbone", "flow_backbone", "detector"},
    }
    for name, pipe in report["pipelines"].items():
        assert set(pipe["stages"]) == expected_stages[name]
        assert all(stage["seconds"] > 0 and stage["runs"] == 1 for stage in pipe["stages"].values())  # --repeats 1
        assert pipe["stages"]["rgb_backbone"]["snippets"] == 8  # (32 - 4) // 4 + 1
        assert pipe["stages"]["detector"]["snippets"] == 8
        assert pipe["extrapolated"] == (name == "two_stream_tvl1")
    # flow: the snippets read 3 pairs each (4 frames every 4), 24 of the clip's 31 pairs; the reported
    # time is for those 24, from 3 measured TV-L1 pairs and from DIS on all 31
    tvl1 = report["pipelines"]["two_stream_tvl1"]["stages"]["flow"]
    dis = report["pipelines"]["two_stream_dis"]["stages"]["flow"]
    assert tvl1["extrapolated"] and (tvl1["measured_pairs"], tvl1["total_pairs"]) == (3, 24)
    assert not dis["extrapolated"] and (dis["measured_pairs"], dis["total_pairs"]) == (31, 24)
    assert tvl1["seconds"] == pytest.approx(tvl1["measured_seconds"] * 24 / 3)
    assert dis["seconds"] == pytest.approx(dis["measured_seconds"] * 24 / 31)
    assert report["pipelines"]["two_stream_dis"]["stages"]["detector"]["input_dim"] == 256  # RGB | flow
    # the times are measured in this run: every stage was timed on its own, so the measured
    # (not extrapolated) seconds of all pipelines fit in the wall time of the command
    measured = sum(stage.get("measured_seconds", stage["seconds"]) * stage["runs"]
                   for pipe in report["pipelines"].values() for stage in pipe["stages"].values())
    assert 0 < measured <= wall, (measured, wall)
    # a pipeline's total is its stages' time, and each ratio the ratio of those totals
    totals = {name: pipe["total_s"] for name, pipe in report["pipelines"].items()}
    for name, pipe in report["pipelines"].items():
        assert totals[name] == pytest.approx(sum(stage["seconds"] for stage in pipe["stages"].values()))
    assert set(report["ratios"]) == {f"{name}_vs_rgb_only" for name in PIPELINES[1:]}
    for name in PIPELINES[1:]:
        assert report["ratios"][f"{name}_vs_rgb_only"] * totals["rgb_only"] == pytest.approx(totals[name])


def test_tvl1_pairs_and_rounds_cover_the_video():
    positions = pair_positions(1800, 24)
    assert len(positions) == 24 and positions[0] == 0 and positions[-1] == 1798
    assert pair_positions(10, 0) == list(range(9)) and pair_positions(10, 50) == list(range(9))
    # rounds of 8 snippets of 8 frames every 4: 449 snippets -> 57 rounds, frames 0..1799
    chunks = rounds(1800, 8, 4, 8)
    assert len(chunks) == 57 and chunks[0] == (0, 36) and chunks[-1] == (448 * 4, 448 * 4 + 8)
    assert rounds(5, 8, 4, 8) == [(0, 5)]  # shorter than a snippet: one padded snippet


def test_make_bench_video(shared_data, tmp_path):
    out = make_bench_video(shared_data / "videos" / "mmaction2_part_0.mp4", tmp_path / "loop.mp4",
                           seconds=2.0, size=64, fps=30)
    info = probe(out)
    assert (info.width, info.height, info.num_frames) == (64, 64, 60) and info.fps == 30.0


def test_flow_pairs_needed_by_the_snippet_grid():
    assert flow_pairs_needed(1800, 8, 16) == 113 * 7      # apart: 7 pairs per snippet
    assert flow_pairs_needed(1801, 8, 4) == 448 * 4 + 7   # overlapping: every covered pair (of 1800)
    assert flow_pairs_needed(1800, 8, 1) == 1799
    assert flow_pairs_needed(5, 8, 4) == 4                 # shorter than a snippet: all pairs


@pytest.mark.parametrize("runtime, precision", [("onnxruntime", "fp32"), ("onnxruntime-int8", "int8")])
def test_bench_runs_every_backbone_with_onnx_runtime(shared_data, tmp_path, capsys, runtime, precision):
    clip = shared_data / "videos" / "mmaction2_part_0.mp4"
    out = tmp_path / "bench.json"
    assert main(["bench", str(clip), "--json", str(out), "--runtime", runtime, *TINY]) == 0
    report = json.loads(out.read_text())
    assert report["settings"]["runtime"] == runtime and report["settings"]["precision"] == precision
    for pipe in report["pipelines"].values():
        assert pipe["stages"]["rgb_backbone"]["snippets"] == 8
    errors = report["settings"]["int8_feature_error"]
    if precision == "int8":  # both backbones quantized, each on its own modality's snippets
        # (the flow of this near-static clip is almost constant: a random flow backbone's
        # features are then tiny against its biases, and their relative error large)
        assert set(errors) == {"rgb", "flow"} and 0 < errors["rgb"] < 0.1 and 0 < errors["flow"] < 1
        assert "int8 backbones: features rgb" in capsys.readouterr().out
    else:
        assert errors is None
    assert main(["bench", str(clip), "--runtime", "onnxruntime", "--precision", "bf16", *TINY]) == 2
