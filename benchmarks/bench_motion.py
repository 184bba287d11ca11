"""Speed of motion computation: frame pairs per second of each optical-flow method and of the
temporal gradient, at 224x224 and 112x112, on a real clip. Prints a table (medians of repeats).

    python benchmarks/bench_motion.py [--video PATH] [--repeats 3] [--threads N]

TV-L1 is slow (about half a second per 224x224 pair on this machine), so it gets fewer pairs.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from rgbtad.motion.flow import FlowEstimator, temporal_gradient, to_gray
from rgbtad.video.decode import read_video

DEFAULT_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos" / "mmaction2_test.mp4"
IMAGENET_STD = (0.229, 0.224, 0.225)


def time_flow(frames: np.ndarray, method: str, preset: str, pairs: int, repeats: int) -> tuple[float, float]:
    """(median, best) pairs/s of `method` over `pairs` consecutive pairs (grayscale conversion included)."""
    estimator = FlowEstimator(method, preset)
    clip = frames[: pairs + 1]
    estimator(to_gray(clip[:1])[0], to_gray(clip[1:2])[0])  # warm-up
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        gray = to_gray(clip)
        for t in range(pairs):
            estimator(gray[t], gray[t + 1])
        rates.append(pairs / (time.perf_counter() - start))
    return statistics.median(rates), max(rates)


def time_tg(frames: np.ndarray, repeats: int) -> tuple[float, float]:
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        temporal_gradient(frames, std=IMAGENET_STD)
        rates.append((len(frames) - 1) / (time.perf_counter() - start))
    return statistics.median(rates), max(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", default=str(DEFAULT_VIDEO))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=60, help="frame pairs for the fast methods")
    parser.add_argument("--tvl1-pairs", type=int, default=4, help="frame pairs for TV-L1 at 224 (x4 at 112)")
    parser.add_argument("--threads", type=int, default=None, help="cv2.setNumThreads (default: OpenCV's)")
    parser.add_argument("--sizes", default="224,112", help="square frame sizes to test")
    args = parser.parse_args()

    import cv2

    if args.threads is not None:
        cv2.setNumThreads(args.threads)
    print(f"video {args.video}; OpenCV {cv2.__version__}, {cv2.getNumThreads()} threads; "
          f"median of {args.repeats} repeats")
    rows = [("tvl1", "-"), ("dis", "ultrafast"), ("dis", "fast"), ("dis", "medium"), ("farneback", "-")]
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[tuple[str, str], dict[int, tuple[float, float]]] = {}
    for size in sizes:
        frames = read_video(args.video, size=(size, size))
        for method, preset in rows:
            pairs = args.tvl1_pairs * (4 if size <= 112 else 1) if method == "tvl1" else args.pairs
            pairs = min(pairs, len(frames) - 1)
            rate = time_flow(frames, method, preset if preset != "-" else "fast", pairs, args.repeats)
            results.setdefault((method, preset), {})[size] = rate
        results.setdefault(("tg", "-"), {})[size] = time_tg(frames[: args.pairs + 1], args.repeats)

    print("pairs/s as median (best); the best repeat is the better guide on a shared machine")
    header = f"{'method':<10} {'preset':<10}" + "".join(f" {f'{s}x{s} pairs/s':>20}" for s in sizes) \
        + f"  {'s per video-minute':>18}"
    print(header)
    for (method, preset), by_size in results.items():
        cells = "".join(f" {f'{by_size[s][0]:.1f} ({by_size[s][1]:.1f})':>20}" for s in sizes)
        minute = 1800 / by_size[sizes[0]][1]  # 30 fps, first size, best repeat
        print(f"{method:<10} {preset:<10}{cells}  {minute:>18.1f}")


if __name__ == "__main__":
    main()
