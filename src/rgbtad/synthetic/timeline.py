"""When the actions of a video happen, and which classes they get.

**THUMOS14 proportions, scaled to short videos.** Measured on ``thumos14.json`` (validation /
test; see `rgbtad.synthetic.statistics.annotation_statistics`): instance durations median
2.9 / 3.2 s, mean 4.0 / 4.5 s (2.8 s and 3.6 s for the 93 % of instances within 0.5-10 s),
10-90 % range 0.9-8.0 / 1.1-9.1 s; fraction of a video covered by actions mean 0.29 / 0.30
(10-90 %: 0.08-0.58 / 0.06-0.57); gaps between instances median 3.2 s (10-90 %: 0.4-20 s);
15 / 16 instances per video (videos of 150-160 s median); distinct classes per video 1.14 /
1.17. Videos here last 20-40 s, so they hold fewer instances (mean about 2.3). Per video:
coverage ~ Beta(1.5, 4.0) (clipped to 0.06-0.7), instance durations ~ log-normal (median
3.4 s, sigma 0.85) clipped to 0.5-10 s and drawn until the coverage is reached, background
split between the gaps by a flat Dirichlet with a 0.4 s minimum. Over 1000 generated videos:
durations median 3.1 s, mean 3.9 s, 10-90 % 1.0-8.8 s; coverage mean 0.30 (10-90 %:
0.09-0.53); gaps median 2.8 s (10-90 %: 0.7-9.2 s, shorter than THUMOS's long tail because
the videos are short); 2.3 instances and 2.25 classes per video (see below).

**One deliberate departure: classes are not tied to videos.** THUMOS14 videos mostly show one
class (1.15 distinct classes per video). Here the instance labels of a subset are dealt from
successive seeded permutations of the classes (`deal_labels`): counts are balanced, every
class appears once a subset has 12 instances, and a video's classes are independent of each
other. The backbones of this benchmark are trained from scratch on its small training split
(about 13 instances per class by default), and with one class per video they learn the
per-video fingerprint (background, noise, blur) instead of the action; THUMOS backbones are
pretrained on Kinetics and do not meet that shortcut.
"""

from __future__ import annotations

import math

import numpy as np

from rgbtad.synthetic.classes import CLASSES

MIN_INSTANCE_S = 0.5
MAX_INSTANCE_S = 10.0
INSTANCE_MEDIAN_S = 3.4
INSTANCE_SIGMA = 0.85
COVERAGE_BETA = (1.5, 4.0)
COVERAGE_RANGE = (0.06, 0.7)
MIN_GAP_S = 0.4


def _instance_lengths(rng: np.random.Generator, num_frames: int, fps: float) -> list[int]:
    lo = max(1, math.ceil(MIN_INSTANCE_S * fps - 1e-9))
    hi = max(lo, math.floor(MAX_INSTANCE_S * fps + 1e-9))
    min_gap = max(1, math.ceil(MIN_GAP_S * fps - 1e-9))
    coverage = float(np.clip(rng.beta(*COVERAGE_BETA), *COVERAGE_RANGE))
    target = coverage * num_frames
    lengths: list[int] = []
    while True:
        seconds = math.exp(math.log(INSTANCE_MEDIAN_S) + INSTANCE_SIGMA * rng.standard_normal())
        length = int(np.clip(round(seconds * fps), lo, hi))
        room = num_frames - sum(lengths) - length - (len(lengths) + 2) * min_gap
        if lengths and (sum(lengths) + 0.5 * length > target or room < 0):
            break
        if room < 0:  # a video too short for even one drawn instance: shrink it
            length = max(lo, num_frames - 2 * min_gap)
            if length > num_frames - 2 * min_gap or length < lo:
                return []
        lengths.append(length)
    return lengths


def plan_timeline(*, size: int, fps: float, min_duration: float, max_duration: float,
                  seed_key: list[int]) -> tuple[int, list[int], list[int]]:
    """Frame count, instance lengths and gaps (frames) of one video from its own stream.

    ``gaps[i]`` precedes instance ``i``; ``gaps[-1]`` follows the last one.
    """
    rng = np.random.default_rng(np.random.SeedSequence(list(seed_key) + [0]))
    num_frames = max(2, round(rng.uniform(min_duration, max_duration) * fps))
    min_gap = max(1, math.ceil(MIN_GAP_S * fps - 1e-9))
    lengths = _instance_lengths(rng, num_frames, fps)
    n = len(lengths)
    free = num_frames - sum(lengths) - (n + 1) * min_gap
    weights = rng.dirichlet(np.ones(n + 1)) if n else np.ones(1)
    gaps = [min_gap + int(math.floor(free * w)) for w in weights]
    gaps[-1] += num_frames - sum(lengths) - sum(gaps)
    return num_frames, lengths, gaps


def deal_labels(num_instances: int, seed_key: list[int], classes: tuple[int, ...] | None = None) -> list[int]:
    """Class ids (indices into `CLASSES`) for the instances of a subset: successive seeded
    permutations of `classes` (default: all), so that the counts are balanced and every class
    appears once there are enough instances."""
    pool = tuple(range(len(CLASSES))) if classes is None else tuple(classes)
    rng = np.random.default_rng(np.random.SeedSequence(list(seed_key)))
    labels: list[int] = []
    while len(labels) < num_instances:
        labels.extend(pool[int(c)] for c in rng.permutation(len(pool)))
    return labels[:num_instances]
