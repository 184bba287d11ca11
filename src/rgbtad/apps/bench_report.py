"""What `rgbtad bench` reports: the JSON-ready report of the stage times per pipeline, their
totals and ratios, the settings and the machine; and the table it prints."""

from __future__ import annotations

import platform
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from rgbtad.apps.bench_pipelines import PIPELINES

if TYPE_CHECKING:  # pragma: no cover
    from rgbtad.apps.bench import BenchSettings

STAGES = ("decode", "flow", "rgb_backbone", "flow_backbone", "detector")  # a pipeline's, in this order


def bench_report(video: Path, info: dict, settings: BenchSettings, device, precision: str,
                 quantization: dict[str, float], stages: dict[str, dict[str, dict]]) -> dict:
    """The report of one bench: `stages[pipeline][stage]` in pipeline order, with each
    pipeline's total and the two-stream pipelines' totals over the RGB-only one."""
    import torch

    from rgbtad.core.precision import cpu_model, native_bf16

    num_frames = info["frames"]
    report: dict = {
        "pipelines": {}, "ratios": {},
        "video": {"path": str(video), "seconds": num_frames / info["fps"], "frames": num_frames, "fps": info["fps"],
                  "size": info["source_size"], "processed_size": info["size"]},
        "settings": {**asdict(settings), "device": str(device), "precision": precision,
                     # int8: relative L2 error of each backbone's features on its calibration snippets
                     "int8_feature_error": quantization or None},
        "environment": {"torch_threads": torch.get_num_threads(), "python": platform.python_version(),
                        "torch": torch.__version__, "machine": platform.machine(), "cpu": cpu_model(),
                        "native_bf16": native_bf16(device)},
    }
    for name in PIPELINES:
        ordered = {key: stages[name][key] for key in STAGES if key in stages[name]}
        report["pipelines"][name] = {"total_s": sum(stage["seconds"] for stage in ordered.values()),
                                     "stages": ordered,
                                     "extrapolated": any(st.get("extrapolated") for st in ordered.values())}
    rgb_total = report["pipelines"]["rgb_only"]["total_s"]
    report["ratios"] = {f"{name}_vs_rgb_only": report["pipelines"][name]["total_s"] / rgb_total
                        for name in PIPELINES[1:]}
    return report


def format_report(report: dict) -> str:
    """A table of stage times per pipeline and the ratios."""
    v = report["video"]
    lines = [f"video: {v['path']} ({v['seconds']:.1f} s, {v['frames']} frames at {v['fps']:g} fps, "
             f"{v['size'][0]}x{v['size'][1]} -> {v['processed_size'][0]}x{v['processed_size'][1]})",
             f"backbones in {report['settings']['precision']} ({report['settings']['runtime']}) on "
             f"{report['environment']['cpu']} "
             f"({report['environment']['torch_threads']} torch threads)",
             *([f"int8 backbones: features {', '.join(f'{m} {100 * e:.1f} %' for m, e in errors.items())} off "
                "float32 (relative L2, calibration snippets)"] if (errors := report['settings'].get('int8_feature_error'))
               else []),
             f"{'pipeline':<18}" + "".join(f"{name:>15}" for name in STAGES) + f"{'total':>11}"]
    for pipe, data in report["pipelines"].items():
        cells = []
        for name in STAGES:
            stage = data["stages"].get(name)
            cells.append(f"{'-':>15}" if stage is None else
                         f"{stage['seconds']:>14.2f}{'*' if stage.get('extrapolated') else ' '}")
        lines.append(f"{pipe:<18}" + "".join(cells) + f"{data['total_s']:>10.2f}s")
    for pipe, data in report["pipelines"].items():
        flow = data["stages"].get("flow")
        if flow and flow.get("extrapolated"):
            lines.append(f"* {pipe}: {flow['method']} measured on {flow['measured_pairs']} of "
                         f"{flow['total_pairs']} frame pairs ({flow['seconds_per_pair']:.3f} s per pair), "
                         "extrapolated")
    for key, ratio in report["ratios"].items():
        other = key.replace("_vs_rgb_only", "")
        if ratio >= 1:
            lines.append(f"rgb_only is {ratio:.1f}x faster than {other}")
        else:
            lines.append(f"rgb_only is {1 / ratio:.1f}x slower than {other}")
    return "\n".join(lines)
