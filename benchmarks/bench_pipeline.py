"""The README speed figure: RGB-only detection against two-stream (TV-L1, DIS) pipelines on a
1-minute 224x224 30 fps video, stage by stage (`rgbtad.apps.bench`, i.e. `rgbtad bench`).

    python benchmarks/bench_pipeline.py [--video PATH] [--source CLIP] [--json OUT] [rgbtad bench options]

Without --video, the video is made first (once) at /tmp/rgbtad_bench_60s_224.mp4 by resizing
a real clip (default ../shared/data/videos/highjump.mp4) to 224x224 and looping it to 60 s.
Any further options go to `rgbtad bench` (e.g. --tvl1-pairs 48 --repeats 5).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rgbtad.apps.bench import make_bench_video
from rgbtad.cli import main as rgbtad_main

DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos" / "highjump.mp4"
DEFAULT_VIDEO = Path("/tmp/rgbtad_bench_60s_224.mp4")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=None, help="video to time (default: the generated one)")
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="clip the 1-minute video is made from")
    parser.add_argument("--json", default="bench_pipeline.json", help="stage times (default bench_pipeline.json)")
    args, rest = parser.parse_known_args()
    video = args.video
    if video is None:
        video = DEFAULT_VIDEO
        if not video.is_file():
            print(f"making {video} from {args.source}", flush=True)
            make_bench_video(args.source, video, seconds=60.0, size=224, fps=30.0)
    return rgbtad_main(["bench", str(video), "--json", args.json, *rest])


if __name__ == "__main__":
    sys.exit(main())
