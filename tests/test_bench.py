"""`rgbtad bench` on a short real clip with tiny settings: the JSON layout and its bookkeeping
(no timing is asserted)."""

import json

import numpy as np
import pytest

from rgbtad.apps.bench import PIPELINES, flow_pairs_needed, make_bench_video, pair_positions, rounds
from rgbtad.cli import main
from rgbtad.core.precision import cpu_model, resolve_precision
from rgbtad.video.decode import probe

TINY = ["--backbone", "tsm_tiny", "--size", "32", "--snippet-frames", "4", "--stride", "4", "--repeats", "1",
        "--tvl1-pairs", "3", "--detector-width", "16", "--quiet"]


def test_bench_writes_the_documented_json(shared_data, tmp_path, capsys):
    clip = shared_data / "videos" / "mmaction2_part_0.mp4"  # 32 frames, 340x256, 30 fps
    out = tmp_path / "bench.json"
    assert main(["bench", str(clip), "--json", str(out), "--runtime", "torch", *TINY]) == 0
    printed = capsys.readouterr().out
    assert "rgb_only is" in printed and "extrapolated" in printed

    report = json.loads(out.read_text())
    # PyTorch backbones: the precision auto chose for this machine is recorded, with the CPU it ran on
    assert report["settings"]["precision"] == resolve_precision("auto", "cpu")
    assert report["environment"]["cpu"] == cpu_model() and f"backbones in {report['settings']['precision']}" in printed
    assert report["video"]["frames"] == 32 and report["video"]["size"] == [340, 256]
    assert report["video"]["seconds"] == np.float64(32 / 30)
    assert set(report["pipelines"]) == set(PIPELINES)
    expected_stages = {
        "rgb_only": {"decode", "rgb_backbone", "detector"},
        "two_stream_tvl1": {"decode", "flow", "rgb_backbone", "flow_backbone", "detector"},
        "two_stream_dis": {"decode", "flow", "rgb_backbone", "flow_backbone", "detector"},
    }
    for name, pipe in report["pipelines"].items():
        assert set(pipe["stages"]) == expected_stages[name]
        assert pipe["total_s"] == sum(stage["seconds"] for stage in pipe["stages"].values())
        assert all(stage["seconds"] > 0 for stage in pipe["stages"].values())
        assert pipe["stages"]["rgb_backbone"]["snippets"] == 8  # (32 - 4) // 4 + 1
        assert pipe["stages"]["detector"]["snippets"] == 8
    tvl1 = report["pipelines"]["two_stream_tvl1"]["stages"]["flow"]
    # the flow of the pairs the 8 snippets read: 3 per snippet of 4 frames (stride 4)
    assert tvl1["extrapolated"] and tvl1["measured_pairs"] == 3 and tvl1["total_pairs"] == 24
    assert tvl1["seconds"] == tvl1["seconds_per_pair"] * 24
    dis = report["pipelines"]["two_stream_dis"]["stages"]["flow"]
    assert dis["measured_pairs"] == 31 and dis["seconds"] == dis["seconds_per_pair"] * 24
    assert tvl1["seconds_per_pair"] == tvl1["measured_seconds"] / 3
    dis = report["pipelines"]["two_stream_dis"]["stages"]["flow"]
    assert not dis["extrapolated"] and dis["measured_pairs"] == 31
    assert report["pipelines"]["two_stream_dis"]["stages"]["detector"]["input_dim"] == 256  # RGB | flow
    for name in PIPELINES[1:]:
        ratio = report["ratios"][f"{name}_vs_rgb_only"]
        assert ratio == report["pipelines"][name]["total_s"] / report["pipelines"]["rgb_only"]["total_s"]


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
