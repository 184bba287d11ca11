"""What int8 backbones cost in accuracy, on trained weights: a finished `rgbtad demo` folder's
RGB backbone (and, with --backbone, any other of its backbones) quantized as
`rgbtad export --int8-calibration` quantizes it, its test features extracted again with the
int8 graph, and the demo's detector evaluated on them against the float32 features.

    python benchmarks/bench_int8.py DEMO_DIR [--backbone rgb] [--model rgb_only] [--calibration-snippets 64]

Calibration uses snippets of the train videos only (as a user calibrates on a few of their own
videos); the error and the mAP are measured on the test videos. Prints the relative L2 error
of the test features, the detector's average mAP on float32 and on int8 features, and the
backbone's time per snippet in both.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rgbtad.apps.demo_layout import backbone_dir
from rgbtad.apps.demo_plan import BACKBONE, DemoSettings
from rgbtad.evaluation.detection import evaluate_detection_files
from rgbtad.export.backbone import export_backbone
from rgbtad.export.quantize import calibration_batches, quantize_backbone, relative_error
from rgbtad.export.runtime import OrtBackbone
from rgbtad.features.extract import extract_features, load_backbone, snippet_encoder
from rgbtad.inference.predict import infer_features
from rgbtad.training.backbone_run import WEIGHTS_FILE


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo_dir", type=Path)
    parser.add_argument("--backbone", default="rgb",
                        help="RGB backbone of the demo (its run directory backbones/NAME/)")
    parser.add_argument("--model", default="rgb_only", help="the demo's detector that reads its features")
    parser.add_argument("--calibration-snippets", type=int, default=128)
    args = parser.parse_args()

    demo = args.demo_dir
    settings = DemoSettings(**{k: tuple(v) if isinstance(v, list) else v
                               for k, v in json.loads((demo / "demo.json").read_text())["settings"].items()})
    ann = demo / "data" / "annotations.json"
    database = json.loads(ann.read_text())["database"]
    videos = {subset: [demo / "data" / "videos" / f"{vid}.mp4" for vid, v in sorted(database.items())
                       if v["subset"] == subset] for subset in ("train", "test")}
    net, _ = load_backbone(BACKBONE, "rgb", backbone_dir(demo, args.backbone) / WEIGHTS_FILE)
    snippets = settings.snippets("rgb")
    encoder = snippet_encoder(net, snippets, precision="fp32")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        fp32_path, int8_path = tmp / "fp32.onnx", tmp / "int8.onnx"
        export_backbone(net, fp32_path, snippet_frames=settings.snippet_frames, height=settings.size,
                        width=settings.size)
        inputs = itertools.chain.from_iterable(encoder.backbone_inputs(v) for v in videos["train"])
        calib_error = quantize_backbone(fp32_path, int8_path, calibration_batches(inputs, args.calibration_snippets))
        timings = {}
        for name, backbone in (("fp32", net), ("int8", OrtBackbone(int8_path))):
            start = time.perf_counter()
            report = extract_features(videos["test"], tmp / name, backbone=backbone, snippets=snippets,
                                      batch_size=32, precision="fp32", progress=False)
            timings[name] = time.perf_counter() - start
            if not report.ok:
                raise SystemExit(report.summary())
        test_error = relative_error((np.load(tmp / "int8" / path.name), np.load(path))
                                    for path in sorted((tmp / "fp32").glob("*.npy")))
        maps = {}
        for name in ("fp32", "int8"):
            pred = tmp / f"{name}.json"
            infer_features(demo / "runs" / args.model, features_dir=tmp / name, annotations=ann, split="test",
                           out_path=pred, progress=False)
            maps[name] = 100 * evaluate_detection_files(ann, pred, split="test").average_mAP
    print(f"backbone {args.backbone} ({BACKBONE}), detector {args.model}, {len(videos['test'])} test videos")
    print(f"int8 feature error: {100 * test_error:.2f} % on the test videos "
          f"({100 * calib_error:.2f} % on the calibration snippets of the train videos)")
    print(f"average mAP: fp32 {maps['fp32']:.2f}, int8 {maps['int8']:.2f} ({maps['int8'] - maps['fp32']:+.2f})")
    print(f"extraction of the test videos (decode + backbone): fp32 PyTorch {timings['fp32']:.1f} s, "
          f"int8 ONNX Runtime {timings['int8']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
