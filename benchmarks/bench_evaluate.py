"""Speed of `rgbtad evaluate` on THUMOS14-sized input.

Generates seeded, realistic detections for the 212 test videos of the real THUMOS14
annotation file (200 per video, 42,400 in all: half are ground-truth segments with jittered
boundaries and a mostly-correct label, half are random segments of random classes with
lower scores), then

* runs the whole command line (`python -m rgbtad evaluate ...`, process start to exit) in a
  subprocess several times and prints the median wall time;
* times the in-process parts: reading the ground truth, reading the detections, and the
  evaluation itself (matching, AP, recall).

Usage:  python benchmarks/bench_evaluate.py [--gt PATH] [--per-video 200] [--repeats 7]
Prints figures only; it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_GT = REPO.parent / "shared" / "data" / "thumos14" / "thumos14.json"


def make_detections(gt_path: Path, per_video: int, seed: int, split: str = "test") -> dict:
    database = json.loads(gt_path.read_text())["database"]
    rng = np.random.default_rng(seed)
    classes = sorted({(a["label_id"], a["label"]) for v in database.values() for a in v["annotations"]})
    names = [name for _, name in classes]
    results = {}
    for vid, video in database.items():
        if video["subset"].lower() != split:
            continue
        duration, anns = float(video["duration"]), video["annotations"]
        dets = []
        for _ in range(per_video // 2 if anns else 0):  # near-misses of the ground truth
            ann = anns[int(rng.integers(len(anns)))]
            start, end = ann["segment"]
            length = max(end - start, 0.1)
            s = start + rng.normal(0.0, 0.15 * length)
            e = max(end + rng.normal(0.0, 0.15 * length), s + 0.1)
            label = ann["label"] if rng.random() < 0.85 else names[int(rng.integers(len(names)))]
            dets.append({"label": label, "score": float(rng.beta(4, 2)), "segment": [float(s), float(e)]})
        while len(dets) < per_video:  # background false alarms
            s = float(rng.uniform(0.0, duration))
            e = min(s + float(rng.exponential(4.0)) + 0.1, duration)
            dets.append({"label": names[int(rng.integers(len(names)))],
                         "score": float(rng.beta(1, 4)), "segment": [s, max(e, s + 0.1)]})
        results[vid] = dets
    return {"version": "VERSION 1.3", "results": results, "external_data": {"used": False}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gt", type=Path, default=DEFAULT_GT)
    parser.add_argument("--split", default="test")
    parser.add_argument("--per-video", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from rgbtad.evaluation.detection import evaluate_detections, parse_tiou
    from rgbtad.evaluation.ground_truth import load_ground_truth
    from rgbtad.evaluation.predictions import load_predictions

    with tempfile.TemporaryDirectory(prefix="rgbtad-bench-eval-") as tmp:
        pred_path = Path(tmp) / "detections.json"
        payload = make_detections(args.gt, args.per_video, args.seed, args.split.lower())
        pred_path.write_text(json.dumps(payload))
        n_det = sum(len(d) for d in payload["results"].values())
        print(f"input: {args.gt.name} split '{args.split}', {len(payload['results'])} videos, "
              f"{n_det} detections ({pred_path.stat().st_size / 1e6:.1f} MB JSON)")

        cmd = [sys.executable, "-m", "rgbtad", "evaluate", "--gt", str(args.gt), "--pred",
               str(pred_path), "--split", args.split, "--json", str(Path(tmp) / "metrics.json")]
        walls = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            walls.append(time.perf_counter() - t0)
            if proc.returncode != 0:
                sys.exit(f"rgbtad evaluate failed:\n{proc.stderr}")
        print(proc.stdout.rstrip())
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import numpy"], check=True)
        baseline = time.perf_counter() - t0

        thresholds = parse_tiou("thumos")
        parts = {"read ground truth": [], "read detections": [], "evaluate (match, AP, recall)": []}
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            gt = load_ground_truth(args.gt, args.split)
            t1 = time.perf_counter()
            preds = load_predictions(pred_path)
            t2 = time.perf_counter()
            evaluate_detections(gt, preds, thresholds)
            t3 = time.perf_counter()
            parts["read ground truth"].append(t1 - t0)
            parts["read detections"].append(t2 - t1)
            parts["evaluate (match, AP, recall)"].append(t3 - t2)

    print()
    print(f"rgbtad evaluate, whole command (median of {args.repeats}): {statistics.median(walls):.3f} s"
          f"  [min {min(walls):.3f}, max {max(walls):.3f}]")
    print(f"  of which interpreter + numpy start-up (python -c 'import numpy'): {baseline:.3f} s")
    print("in-process, median:")
    for name, values in parts.items():
        print(f"  {name:<30} {statistics.median(values):.3f} s")
    total = sum(statistics.median(v) for v in parts.values())
    print(f"  {'total':<30} {total:.3f} s")


if __name__ == "__main__":
    main()
