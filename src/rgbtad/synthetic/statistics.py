"""Timeline statistics of an ActionFormer annotation database (to compare with THUMOS14).

Written into ``benchmark.json`` for each subset, and used to check that the generated
timelines follow THUMOS14's proportions (`rgbtad.synthetic.timeline`).
"""

from __future__ import annotations

import numpy as np


def _summary(values: list[float]) -> dict:
    if not values:
        return {"count": 0}
    a = np.asarray(values, dtype=np.float64)
    p = np.percentile(a, [5, 10, 25, 50, 75, 90, 95])
    return {"count": int(a.size), "mean": round(float(a.mean()), 3), "min": round(float(a.min()), 3),
            "p5": round(float(p[0]), 3), "p10": round(float(p[1]), 3), "p25": round(float(p[2]), 3),
            "median": round(float(p[3]), 3), "p75": round(float(p[4]), 3), "p90": round(float(p[5]), 3),
            "p95": round(float(p[6]), 3), "max": round(float(a.max()), 3)}


def _merged(segs: list[tuple[float, float]]) -> list[list[float]]:
    """Sorted segments with the overlapping ones merged."""
    merged: list[list[float]] = []
    for s, e in segs:
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return merged


def annotation_statistics(database: dict, subset: str | None = None) -> dict:
    """Timeline statistics of an ActionFormer ``database`` (one subset, case-insensitive).

    Instances per video, instance durations (s), fraction of each video covered by actions
    (union of its segments), gaps between consecutive (merged) instances (s), distinct classes
    per video, and the share of instances per class. Used to compare this benchmark with
    THUMOS14.
    """
    videos = [v for v in database.values() if subset is None or str(v.get("subset", "")).lower() == subset.lower()]
    counts, lengths, coverage, gaps, classes_per_video, durations = [], [], [], [], [], []
    per_class: dict[str, int] = {}
    for v in videos:
        segs = sorted((float(a["segment"][0]), float(a["segment"][1])) for a in v.get("annotations", []))
        counts.append(len(segs))
        durations.append(float(v["duration"]))
        lengths += [e - s for s, e in segs]
        for a in v.get("annotations", []):
            per_class[a["label"]] = per_class.get(a["label"], 0) + 1
        classes_per_video.append(len({a["label"] for a in v.get("annotations", [])}))
        merged = _merged(segs)
        if v["duration"] > 0:
            coverage.append(sum(e - s for s, e in merged) / float(v["duration"]))
        gaps += [merged[i + 1][0] - merged[i][1] for i in range(len(merged) - 1)]
    return {
        "videos": len(videos),
        "video_duration_s": _summary(durations),
        "instances_per_video": _summary(counts),
        "instance_duration_s": _summary(lengths),
        "coverage": _summary(coverage),
        "gap_s": _summary(gaps),
        "classes_per_video": _summary(classes_per_video),
        "instances_per_class": dict(sorted(per_class.items())),
    }
