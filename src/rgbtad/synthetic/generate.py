"""The built-in synthetic motion-action benchmark: untrimmed mp4 videos + ActionFormer JSON.

Why it exists: real THUMOS14 videos cannot be downloaded here, yet the project's claim (motion
knowledge is worth 6 to 15 points of average mAP, and distillation recovers part of it) must be
testable on this CPU. This generator makes a small benchmark that is hard *in the right way*:
half of the classes can only be told apart by their motion, so an appearance (RGB snippet)
backbone confuses them in pairs while optical flow separates them easily.

**Classes** (`CLASSES`, 12): four *motion pairs* whose two classes use the same object, drawn
from the same appearance distribution per instance, and differ only in how its texture moves
(direction of translation, sense of rotation, speed, periodic versus one-way); and four
*appearance* classes, each with its own shape and its own characteristic motion (so that flow
alone separates them too). The moving textures of the motion pairs sit inside static windows,
so a single frame carries no information about the class within a pair. Families do differ in
appearance (window shape, texture kind: `FAMILY_TEXTURE`, and colour: `FAMILY_HUES`), so that
an appearance backbone trained from scratch in a minute or two recognises the family and is
left with the pair. Size, exact colours and texture are random per instance, from the same
distribution for both classes of a pair.

**Nuisance.** A textured background that drifts slowly; camera jitter (a damped random walk of
the whole frame, per-video strength, none in some videos); static look-alikes (a textured
object sitting still, either for a few seconds in the background between actions or for the
whole video); wanderers (textured look-alikes, or plain squares and crosses of no class, that
translate as a whole, slowly, outside actions). The plain objects of the appearance classes
get no look-alikes, so that appearance alone finds them. The action object itself sits still
for up to 0.6 s before and after its action (so presence alone does not give the boundaries).
Slow global illumination changes; Gaussian blur and pixel noise (per-video strength); H.264
compression. Speeds are 0.5 to 3 pixels per frame at 64 px and 10 fps, which DIS flow follows.

**Timeline: THUMOS14 proportions, scaled to short videos.** Measured on
``thumos14.json`` (validation / test; see `annotation_statistics`): instance durations median
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

**Files** (in ``out_dir``):

- ``videos/<video_id>.mp4``: H.264, yuv420p, ``size x size`` pixels, constant ``fps``;
- ``annotations.json``: ActionFormer format, ``{"version", "database": {video_id: {"subset":
  "train" | "test", "duration", "fps", "annotations": [{"label", "label_id", "segment": [s,
  e]}]}}}``; segments lie on frame boundaries (frame ``k`` spans ``[k / fps, (k + 1) / fps)``),
  sorted and non-overlapping;
- ``benchmark.json``: generator settings, the class list with descriptions, and statistics.

Everything is written atomically. ``annotations.json`` is written last, so its presence (with
a ``benchmark.json`` of the same settings) marks a finished benchmark: a second call with the
same settings returns at once, and an interrupted one renders only the missing videos.

**Determinism.** Every video is planned and rendered from its own random stream,
``SeedSequence([seed, subset, index])``, so the same seed gives byte-identical annotations and
identical decoded frames, and adding test videos does not change the training ones.
x264 runs single-threaded and without macroblock-tree rate control (``mbtree=0``): with it,
this x264 build produced different bitstreams from run to run for identical input. The RGB to
YUV 4:2:0 conversion is done here (`rgb_to_yuv420p`), so the encoder input is fully defined.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from rgbtad.core.errors import RgbtadError
from rgbtad.core.atomic import atomic_path, write_json

FORMAT = "rgbtad-synth-1"
ANNOTATION_FILE = "annotations.json"
METADATA_FILE = "benchmark.json"
VIDEO_DIR = "videos"
SUBSETS = ("train", "test")

# Geometry and speeds are defined for 64-pixel frames and scaled with the frame size; speeds
# are in pixels per second (at 64 px) and converted to pixels per frame with the frame rate.
REF_SIZE = 64.0


@dataclass(frozen=True)
class ClassSpec:
    """One action class: its name, the object family it uses, and how it looks and moves."""

    name: str
    family: str
    description: str
    #: "motion" when the class shares its appearance with its pair partner and differs only in
    #: motion; "appearance" when its object looks different from every other class.
    cue: str
    #: the other class of a motion pair (None for appearance classes)
    partner: str | None = None


#: The classes, in label-id order.
CLASSES: tuple[ClassSpec, ...] = (
    ClassSpec("belt_left", "belt", "a wide red window of vertical streaks whose texture scrolls to the left",
              "motion", "belt_right"),
    ClassSpec("belt_right", "belt", "a wide red window of vertical streaks whose texture scrolls to the right",
              "motion", "belt_left"),
    ClassSpec("wheel_cw", "wheel", "a yellow disc with spokes whose texture turns clockwise", "motion", "wheel_ccw"),
    ClassSpec("wheel_ccw", "wheel", "a yellow disc with spokes whose texture turns counter-clockwise",
              "motion", "wheel_cw"),
    ClassSpec("lift_fast", "lift", "a tall green window of horizontal streaks whose texture scrolls up or down "
              "fast (24-32 px/s at 64 px)", "motion", "lift_slow"),
    ClassSpec("lift_slow", "lift", "a tall green window of horizontal streaks whose texture scrolls up or down "
              "slowly (8-12 px/s at 64 px)", "motion", "lift_fast"),
    ClassSpec("tile_shake", "tile", "a blue diamond of blobs whose texture shakes back and forth along a diagonal",
              "motion", "tile_drift"),
    ClassSpec("tile_drift", "tile", "a blue diamond of blobs whose texture drifts steadily one way along a diagonal",
              "motion", "tile_shake"),
    ClassSpec("ball_bounce", "ball", "a plain cyan ball that hops up and down", "appearance"),
    ClassSpec("ring_pulse", "ring", "a plain orange ring that grows and shrinks periodically", "appearance"),
    ClassSpec("bar_swing", "bar", "a plain violet bar that swings back and forth about one end", "appearance"),
    ClassSpec("dots_orbit", "dots", "two plain magenta dots circling around their midpoint", "appearance"),
)

CLASS_NAMES: tuple[str, ...] = tuple(c.name for c in CLASSES)
TEXTURED_FAMILIES = ("belt", "wheel", "lift", "tile")
PLAIN_FAMILIES = ("ball", "ring", "bar", "dots")
FAMILIES = TEXTURED_FAMILIES + PLAIN_FAMILIES

# --- timeline parameters (see the module doc) ---------------------------------------------
MIN_INSTANCE_S = 0.5
MAX_INSTANCE_S = 10.0
INSTANCE_MEDIAN_S = 3.4
INSTANCE_SIGMA = 0.85
COVERAGE_BETA = (1.5, 4.0)
COVERAGE_RANGE = (0.06, 0.7)
MIN_GAP_S = 0.4
MAX_LEAD_S = 0.6          # the action object sits still up to this long before / after
DISTRACTOR_EVERY_S = 10.0  # mean background time per distractor event
PERSISTENT_LOOKALIKE_PROB = 0.2

DEFAULTS = {"num_train": 60, "num_test": 30, "seed": 0, "size": 64, "fps": 10.0,
            "min_duration": 20.0, "max_duration": 40.0}


# --------------------------------------------------------------------------- plans


@dataclass
class Track:
    """One object on screen for frames ``[start, end)``.

    ``mode``: "action" (internal motion during ``[act_start, act_end)``, still before and
    after), "still" (a static look-alike) or "wander" (translates as a whole along a smooth
    path, internal state frozen). ``params`` holds the family's shape, colours and motion.
    """

    family: str
    mode: str
    start: int
    end: int
    center: tuple[float, float]
    radius: float  # bounding radius of the object around its centre (pixels)
    params: dict[str, Any] = field(default_factory=dict)
    act_start: int = 0
    act_end: int = 0


@dataclass
class VideoPlan:
    video_id: str
    subset: str
    num_frames: int
    fps: float
    size: int
    instances: list[tuple[int, int, int]]  # (start frame, end frame (exclusive), label id)
    tracks: list[Track]
    scene: dict[str, Any]
    render_seed: list[int]


def _scale(size: int) -> float:
    return size / REF_SIZE


#: Hue of each object family. Both classes of a motion pair share their family's colour (so
#: colour says nothing within a pair); families differ, as actions of different kinds differ
#: in appearance in real videos. Each instance jitters hue, saturation and brightness.
FAMILY_HUES = {"belt": 0.0, "ring": 0.08, "wheel": 0.16, "lift": 0.33,
               "ball": 0.5, "tile": 0.62, "bar": 0.75, "dots": 0.88}


def _random_colours(rng: np.random.Generator, hue: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A light and a dark colour (RGB in 0..255) of about `hue`, or of a random hue."""
    import colorsys

    hue = rng.random() if hue is None else (hue + rng.uniform(-0.03, 0.03)) % 1.0
    light = np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.45, 0.7), rng.uniform(0.8, 1.0))) * 255
    dark = np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.7, 0.9), rng.uniform(0.15, 0.3))) * 255
    return light.astype(np.float32), dark.astype(np.float32)


def _periodic_texture(rng: np.random.Generator, n: int, wavelength: tuple[float, float],
                      stripes: str | None = None) -> np.ndarray:
    """n x n periodic band-pass noise in [0, 1] with structure at the given wavelengths (px).

    ``stripes="vertical"`` keeps only the frequencies that vary mostly along x (streaky
    vertical stripes), ``"horizontal"`` those that vary mostly along y; None is isotropic.
    """
    f = np.fft.fftfreq(n)
    fy, fx = f[:, None], f[None, :]
    fr = np.sqrt(fx ** 2 + fy ** 2)
    lo, hi = 1.0 / wavelength[1], 1.0 / wavelength[0]
    band = ((fr >= lo) & (fr <= hi)).astype(np.float64)
    band = np.maximum(band, np.exp(-((fr - 0.5 * (lo + hi)) ** 2) / (2 * (0.5 * (hi - lo)) ** 2)))
    if stripes == "vertical":
        band *= np.exp(-((fy / (0.3 * np.abs(fx) + 1e-3)) ** 2))
    elif stripes == "horizontal":
        band *= np.exp(-((fx / (0.3 * np.abs(fy) + 1e-3)) ** 2))
    band[0, 0] = 0.0
    spectrum = (rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))) * band
    tex = np.real(np.fft.ifft2(spectrum))
    lo_v, hi_v = np.percentile(tex, [3, 97])
    return np.clip((tex - lo_v) / max(hi_v - lo_v, 1e-9), 0.0, 1.0).astype(np.float32)


#: Texture of each textured family (the same for both classes of a pair): streaks across the
#: direction of motion for the belts (vertical) and lifts (horizontal), spokes for the wheels,
#: isotropic blobs for the tiles. Families differ in texture, so an appearance backbone learns
#: them quickly; within a pair nothing differs but the motion.
FAMILY_TEXTURE = {"belt": "vertical", "lift": "horizontal", "wheel": "spokes", "tile": None}


def _object_params(rng: np.random.Generator, family: str, s: float, fps: float) -> tuple[dict, float]:
    """Appearance (and the motion-independent geometry) of one object; returns (params, radius)."""
    p: dict[str, Any] = {}
    light, dark = _random_colours(rng, FAMILY_HUES.get(family))
    p["light"], p["dark"] = light.tolist(), dark.tolist()
    p["border"] = (dark * rng.uniform(0.3, 0.6)).tolist()
    if family in TEXTURED_FAMILIES:
        p["texture_seed"] = int(rng.integers(2**31))
        p["wavelength"] = [5.0 * s, 12.0 * s] if family == "tile" else [3.5 * s, 9.0 * s]
        if FAMILY_TEXTURE[family] in ("vertical", "horizontal"):
            p["stripes"] = FAMILY_TEXTURE[family]
        if family == "wheel":
            p["spokes"] = int(rng.integers(5, 9))
            p["spoke_twist"] = float(rng.uniform(-0.15, 0.15) / s)  # radians per pixel of radius
    if family == "belt":
        p["hw"], p["hh"] = rng.uniform(9, 13) * s, rng.uniform(5, 7) * s
        radius = math.hypot(p["hw"], p["hh"])
    elif family == "lift":
        p["hw"], p["hh"] = rng.uniform(5, 7) * s, rng.uniform(9, 13) * s
        radius = math.hypot(p["hw"], p["hh"])
    elif family == "wheel":
        p["r"] = rng.uniform(8, 12) * s
        radius = p["r"]
    elif family == "tile":
        p["a"] = rng.uniform(10, 14) * s  # half diagonal of the diamond
        radius = p["a"]
    elif family == "ball":
        p["r"] = rng.uniform(5, 7) * s
        p["hop"] = rng.uniform(8, 14) * s
        p["hop_period"] = rng.uniform(0.6, 1.0) * fps  # frames
        radius = p["r"] + p["hop"] / 2 + 1
    elif family == "ring":
        p["r0"] = rng.uniform(4, 6) * s
        p["grow"] = rng.uniform(5, 8) * s
        p["width"] = rng.uniform(2.5, 3.5) * s
        p["period"] = rng.uniform(1.0, 1.8) * fps
        radius = p["r0"] + p["grow"] + p["width"] / 2
    elif family == "bar":
        p["length"] = rng.uniform(14, 20) * s
        p["width"] = rng.uniform(4.0, 5.0) * s
        p["angle0"] = rng.uniform(0, 2 * math.pi)
        p["swing"] = math.radians(rng.uniform(40, 70))
        p["period"] = rng.uniform(0.8, 1.6) * fps
        # the far end swings up to ~0.95 length from the centre (pivot at half a length)
        radius = p["length"] + p["width"] / 2
    elif family == "dots":
        p["dot_r"] = rng.uniform(3.0, 4.0) * s
        p["orbit"] = rng.uniform(6, 10) * s
        p["phase0"] = rng.uniform(0, 2 * math.pi)
        speed = rng.uniform(12, 24) * s / fps  # rim speed, px / frame
        p["omega"] = speed / p["orbit"] * (1 if rng.random() < 0.5 else -1)
        radius = p["orbit"] + p["dot_r"]
    elif family == "blob":  # a distractor that belongs to no class: a plain square or cross
        p["half"] = rng.uniform(3.5, 6.0) * s
        p["cross"] = bool(rng.random() < 0.5)
        radius = p["half"] * math.sqrt(2)
    else:  # pragma: no cover - internal
        raise ValueError(family)
    return p, radius + 1.0


def _diagonal(rng: np.random.Generator) -> float:
    """One of the four diagonal directions, within 15 degrees (the tiles move diagonally,
    the belts horizontally and the lifts vertically)."""
    return math.pi / 4 + math.pi / 2 * int(rng.integers(4)) + math.radians(rng.uniform(-15, 15))


def _action_motion(rng: np.random.Generator, name: str, s: float, fps: float) -> dict:
    """Class-specific motion parameters (per frame) of an action object."""
    m: dict[str, Any] = {}
    per_frame = s / fps
    if name in ("belt_left", "belt_right"):
        v = rng.uniform(10, 20) * per_frame
        m["velocity"] = [-v if name == "belt_left" else v, 0.0]
    elif name in ("wheel_cw", "wheel_ccw"):
        m["rim_speed"] = rng.uniform(10, 20) * per_frame
        m["sense"] = 1 if name == "wheel_cw" else -1  # +1: clockwise on screen (y down)
    elif name in ("lift_fast", "lift_slow"):
        v = rng.uniform(24, 32) * per_frame if name == "lift_fast" else rng.uniform(8, 12) * per_frame
        m["velocity"] = [0.0, v if rng.random() < 0.5 else -v]
    elif name == "tile_shake":
        angle = _diagonal(rng)
        m["axis"] = [math.cos(angle), math.sin(angle)]
        # a slow, smooth oscillation whose mean speed (4 A / T, 7-12 px/s at 64 px) is that
        # of a drift, so that only the reversals tell the two apart
        m["amplitude"] = rng.uniform(2.5, 3.5) * s
        m["period"] = rng.uniform(0.9, 1.3) * fps
    elif name == "tile_drift":
        angle = _diagonal(rng)
        v = rng.uniform(7, 12) * per_frame
        m["velocity"] = [v * math.cos(angle), v * math.sin(angle)]
    # plain families carry their motion in the object parameters
    return m


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


def _place(rng: np.random.Generator, size: int, radius: float, avoid: list[tuple[tuple[float, float], float]],
           tries: int = 60) -> tuple[float, float]:
    """A centre keeping the object inside the frame and away from the objects in `avoid`."""
    margin = min(radius + 1.0, size / 2 - 1.0)
    best, best_clear = None, -1e9
    for _ in range(tries):
        c = (rng.uniform(margin, size - margin), rng.uniform(margin, size - margin))
        clear = min((math.hypot(c[0] - o[0], c[1] - o[1]) - r - radius for o, r in avoid), default=1e9)
        if clear >= 2.0:
            return c
        if clear > best_clear:
            best, best_clear = c, clear
    return best


def _wander_params(rng: np.random.Generator, s: float, fps: float) -> dict:
    """A smooth bounded random path: slow (at most ~7 px/s at 64 px) translation."""
    amp = rng.uniform(3, 6) * s
    max_speed = rng.uniform(3, 7) * s / fps
    omega = max_speed / amp  # rad / frame, so that amp * omega = max speed per axis
    return {"amp": amp, "omega": [omega * rng.uniform(0.6, 1.0), omega * rng.uniform(0.6, 1.0)],
            "phase": [rng.uniform(0, 2 * math.pi), rng.uniform(0, 2 * math.pi)]}


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


def plan_video(video_id: str, subset: str, labels: list[int], timeline: tuple[int, list[int], list[int]], *,
               size: int, fps: float, seed_key: list[int]) -> VideoPlan:
    """Draw the objects and nuisance of one video (its timeline and labels are given)."""
    rng = np.random.default_rng(np.random.SeedSequence(list(seed_key) + [1]))
    s = _scale(size)
    num_frames, lengths, gaps = timeline
    instances = []
    t = gaps[0]
    for i, length in enumerate(lengths):
        instances.append((t, t + length, int(labels[i])))
        t += length + gaps[i + 1]

    tracks: list[Track] = []
    occupied: list[tuple[tuple[float, float], float]] = []
    # A static look-alike present during the whole video, in some videos.
    if rng.random() < PERSISTENT_LOOKALIKE_PROB:
        family = TEXTURED_FAMILIES[int(rng.integers(len(TEXTURED_FAMILIES)))]
        params, radius = _object_params(rng, family, s, fps)
        params["state"] = float(rng.uniform(0, 100))
        center = _place(rng, size, radius, [])
        tracks.append(Track(family, "still", 0, num_frames, center, radius, params))
        occupied.append((center, radius))
    # The action objects, each with a still lead-in / lead-out.
    busy: list[tuple[int, int]] = []
    for i, (a0, a1, label) in enumerate(instances):
        spec = CLASSES[label]
        params, radius = _object_params(rng, spec.family, s, fps)
        params.update(_action_motion(rng, spec.name, s, fps))
        gap_before, gap_after = gaps[i], gaps[i + 1]
        lead_in = int(round(rng.uniform(0, 1) * min(MAX_LEAD_S * fps, 0.45 * gap_before)))
        lead_out = int(round(rng.uniform(0, 1) * min(MAX_LEAD_S * fps, 0.45 * gap_after)))
        center = _place(rng, size, radius, occupied)
        tracks.append(Track(spec.family, "action", a0 - lead_in, a1 + lead_out, center, radius, params,
                            act_start=a0, act_end=a1))
        busy.append((a0 - lead_in, a1 + lead_out))
    # Distractor events (still look-alikes, wanderers) in the background between actions.
    bounds = [0] + [b for span in busy for b in span] + [num_frames]
    for j in range(0, len(bounds), 2):
        lo, hi = bounds[j], bounds[j + 1]
        room = hi - lo
        if room < fps:
            continue
        count = int(rng.poisson(room / (DISTRACTOR_EVERY_S * fps)))
        cursor = lo
        for k in range(count):
            length = int(round(rng.uniform(1.0, 5.0) * fps))
            start_max = hi - length
            if start_max <= cursor:
                break
            start = int(rng.integers(cursor, start_max + 1))
            # still look-alikes and wanderers of the textured families (their actions differ
            # from them only by the motion of the texture), and wandering plain blobs of no
            # class; the plain objects of the appearance classes get no look-alikes
            mode = "still" if rng.random() < 0.5 else "wander"
            families = TEXTURED_FAMILIES if mode == "still" else TEXTURED_FAMILIES + ("blob",) * 2
            family = families[int(rng.integers(len(families)))]
            params, radius = _object_params(rng, family, s, fps)
            params["state"] = float(rng.uniform(0, 100))
            if mode == "wander":
                params["path"] = _wander_params(rng, s, fps)
                radius += params["path"]["amp"] * math.sqrt(2)
            center = _place(rng, size, radius, occupied)
            tracks.append(Track(family, mode, start, start + length, center, radius, params))
            cursor = start + length + 1

    light, dark = _random_colours(rng)
    grey = rng.uniform(0.2, 0.5)
    bg_angle = rng.uniform(0, 2 * math.pi)
    bg_speed = rng.uniform(1.0, 4.0) * s / fps
    scene = {
        "bg_light": (light * grey + 128 * (1 - grey)).tolist(),
        "bg_dark": (dark * grey + 90 * (1 - grey)).tolist(),
        "bg_contrast": float(rng.uniform(0.2, 0.45)),
        "bg_wavelength": [8.0 * s, 24.0 * s],
        "bg_texture_seed": int(rng.integers(2**31)),
        "bg_velocity": [bg_speed * math.cos(bg_angle), bg_speed * math.sin(bg_angle)],
        "jitter": 0.0 if rng.random() < 0.4 else float(rng.uniform(0.1, 0.4) * s),
        "blur": float(rng.uniform(0.3, 0.8) * s),
        "noise": float(rng.uniform(1.5, 5.0)),
        "flicker": float(rng.uniform(0.0, 0.06)),
        "flicker_period": float(rng.uniform(3.0, 10.0) * fps),
    }
    return VideoPlan(video_id, subset, num_frames, fps, size, instances, tracks, scene,
                     render_seed=list(seed_key) + [2])


# --------------------------------------------------------------------------- rendering


class _Renderer:
    """Draws the frames of one plan (float32 H x W x 3 in 0..255)."""

    def __init__(self, plan: VideoPlan):
        import cv2

        self.cv2 = cv2
        self.plan = plan
        self.size = plan.size
        self.rng = np.random.default_rng(np.random.SeedSequence(plan.render_seed))
        sc = plan.scene
        tex = _periodic_texture(np.random.default_rng(sc["bg_texture_seed"]), self.size, tuple(sc["bg_wavelength"]))
        tex = 0.5 + (tex - 0.5) * sc["bg_contrast"]
        light, dark = np.array(sc["bg_light"], np.float32), np.array(sc["bg_dark"], np.float32)
        self.background = (dark + (light - dark) * tex[..., None]).astype(np.float32)
        self.textures: dict[int, np.ndarray] = {}
        ys, xs = np.mgrid[0:self.size, 0:self.size].astype(np.float32)
        self.xs, self.ys = xs + 0.5, ys + 0.5  # pixel centres
        self.jitter = np.zeros(2)
        self.tex_size = max(16, int(round(48 * _scale(self.size))))

    def _texture(self, params: dict) -> np.ndarray:
        key = params["texture_seed"]
        if key not in self.textures:
            kind = params.get("stripes")
            self.textures[key] = _periodic_texture(np.random.default_rng(key), self.tex_size,
                                                   tuple(params["wavelength"]), stripes=kind)
        return self.textures[key]

    # -- object state at frame t ------------------------------------------------------------

    @staticmethod
    def _phase(track: Track, t: int) -> float:
        """Frames of internal motion so far (frozen before / after the action)."""
        if track.mode != "action":
            return float(track.params.get("state", 0.0))
        return float(min(max(t - track.act_start, 0), track.act_end - track.act_start))

    @staticmethod
    def _center(track: Track, t: int) -> tuple[float, float]:
        cx, cy = track.center
        if track.mode == "wander":
            p = track.params["path"]
            k = t - track.start
            cx += p["amp"] * math.sin(p["omega"][0] * k + p["phase"][0])
            cy += p["amp"] * math.sin(p["omega"][1] * k + p["phase"][1])
        return cx, cy

    def _draw(self, frame: np.ndarray, track: Track, t: int) -> None:
        cv2 = self.cv2
        p = track.params
        tau = self._phase(track, t)
        cx, cy = self._center(track, t)
        r = int(math.ceil(track.radius + 2))
        x0, x1 = max(0, int(cx) - r), min(self.size, int(cx) + r + 1)
        y0, y1 = max(0, int(cy) - r), min(self.size, int(cy) + r + 1)
        if x0 >= x1 or y0 >= y1:
            return
        X = self.xs[y0:y1, x0:x1] - cx
        Y = self.ys[y0:y1, x0:x1] - cy
        fam = track.family
        light, dark = np.array(p["light"], np.float32), np.array(p["dark"], np.float32)
        border_w = 1.0 * _scale(self.size)
        if fam in TEXTURED_FAMILIES:
            if fam in ("belt", "lift"):
                d = np.minimum(p["hw"] - np.abs(X), p["hh"] - np.abs(Y))
            elif fam == "wheel":
                d = p["r"] - np.sqrt(X * X + Y * Y)
            else:  # tile: diamond
                d = (p["a"] - np.abs(X) - np.abs(Y)) / math.sqrt(2.0)
            # texture coordinates: the texture moves, the window stays
            if fam == "wheel":
                sense = p.get("sense", 1)
                angle = sense * p.get("rim_speed", 0.0) / p["r"] * tau if track.mode == "action" else tau * 0.1
                ca, sa = math.cos(angle), math.sin(angle)
                # a point of the texture at local angle phi shows at phi + angle (clockwise on
                # screen, y down, for sense +1); sample by the inverse rotation.
                u = ca * X + sa * Y
                v = -sa * X + ca * Y
            else:
                if track.mode == "action" and "axis" in p:  # shake
                    off = p["amplitude"] * math.sin(2 * math.pi * tau / p["period"])
                    ox, oy = p["axis"][0] * off, p["axis"][1] * off
                elif track.mode == "action":
                    ox, oy = p["velocity"][0] * tau, p["velocity"][1] * tau
                else:
                    ox, oy = 3.7 * tau, 1.3 * tau  # a frozen, arbitrary texture position
                u, v = X - ox, Y - oy
            tex = self._texture(p)
            n = float(tex.shape[0])
            mapx = np.mod(u + n / 2, n).astype(np.float32)
            mapy = np.mod(v + n / 2, n).astype(np.float32)
            val = cv2.remap(tex, mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
            if fam == "wheel":  # spokes (soft sectors, slightly twisted) over fine noise
                theta = np.arctan2(v, u) + p["spoke_twist"] * np.sqrt(u * u + v * v)
                val = 0.65 * (0.5 + 0.5 * np.sin(p["spokes"] * theta)) + 0.35 * val
            fill = dark + (light - dark) * val[..., None]
        else:
            if fam == "ball":
                period = p["hop_period"]
                phase = (tau / period) % 1.0 if track.mode == "action" else 0.0
                lift = 4 * p["hop"] * phase * (1 - phase)  # parabolic hop
                by = p["hop"] / 2 - lift
                d = p["r"] - np.sqrt(X * X + (Y - by) ** 2)
            elif fam == "ring":
                phase = tau / p["period"] if track.mode == "action" else 0.0
                radius = p["r0"] + p["grow"] * 0.5 * (1 - math.cos(2 * math.pi * phase))
                d = p["width"] / 2 - np.abs(np.sqrt(X * X + Y * Y) - radius)
            elif fam == "bar":
                angle = p["angle0"] + (p["swing"] * math.sin(2 * math.pi * tau / p["period"])
                                       if track.mode == "action" else 0.0)
                # pivot at one end, placed so that the bar's midpoint starts at the centre
                px_, py_ = -math.cos(p["angle0"]) * p["length"] / 2, -math.sin(p["angle0"]) * p["length"] / 2
                ex, ey = math.cos(angle) * p["length"], math.sin(angle) * p["length"]
                qx, qy = X - px_, Y - py_
                h = np.clip((qx * ex + qy * ey) / (ex * ex + ey * ey), 0.0, 1.0)
                d = p["width"] / 2 - np.sqrt((qx - h * ex) ** 2 + (qy - h * ey) ** 2)
            elif fam == "blob":
                h_ = p["half"]
                if p["cross"]:
                    d = np.maximum(np.minimum(h_ - np.abs(X), h_ / 3 - np.abs(Y)),
                                   np.minimum(h_ / 3 - np.abs(X), h_ - np.abs(Y)))
                else:
                    d = np.minimum(h_ - np.abs(X), h_ - np.abs(Y))
            else:  # dots
                angle = p["phase0"] + (p["omega"] * tau if track.mode == "action" else 0.0)
                dx, dy = math.cos(angle) * p["orbit"], math.sin(angle) * p["orbit"]
                d1 = p["dot_r"] - np.sqrt((X - dx) ** 2 + (Y - dy) ** 2)
                d2 = p["dot_r"] - np.sqrt((X + dx) ** 2 + (Y + dy) ** 2)
                d = np.maximum(d1, d2)
            # plain objects: a soft vertical shading of one colour
            shade = np.clip(0.5 - Y / (2 * track.radius + 1e-6), 0.0, 1.0)[..., None]
            fill = light * (0.85 + 0.15 * shade)
        alpha = np.clip(d + 0.5, 0.0, 1.0)[..., None]
        inner = np.clip(d - border_w + 0.5, 0.0, 1.0)[..., None]
        colour = np.array(p["border"], np.float32) + (fill - np.array(p["border"], np.float32)) * inner
        region = frame[y0:y1, x0:x1]
        region += (colour - region) * alpha

    # -- frames -----------------------------------------------------------------------------

    def frame(self, t: int) -> np.ndarray:
        cv2 = self.cv2
        sc = self.plan.scene
        size = self.size
        vx, vy = sc["bg_velocity"]
        m = np.array([[1, 0, vx * t], [0, 1, vy * t]], np.float32)
        frame = cv2.warpAffine(self.background, m, (size, size), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_WRAP)
        for track in self.plan.tracks:
            if track.start <= t < track.end:
                self._draw(frame, track, t)
        if sc["jitter"] > 0:
            self.jitter = 0.8 * self.jitter + self.rng.normal(0.0, sc["jitter"], 2)
            self.jitter = np.clip(self.jitter, -3 * _scale(size), 3 * _scale(size))
            m = np.array([[1, 0, self.jitter[0]], [0, 1, self.jitter[1]]], np.float32)
            frame = cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if sc["flicker"] > 0:
            frame *= 1.0 + sc["flicker"] * math.sin(2 * math.pi * t / sc["flicker_period"])
        frame = cv2.GaussianBlur(frame, (0, 0), sc["blur"])
        frame += self.rng.standard_normal(frame.shape, dtype=np.float32) * np.float32(sc["noise"])
        return np.clip(frame + 0.5, 0, 255).astype(np.uint8)


def render_frames(plan: VideoPlan) -> np.ndarray:
    """All frames of a plan as ``N x size x size x 3`` uint8 RGB (what the mp4 encodes)."""
    renderer = _Renderer(plan)
    return np.stack([renderer.frame(t) for t in range(plan.num_frames)])


def _fps_fraction(fps: float) -> Fraction:
    return Fraction(fps).limit_denominator(1001)


_YUV_MATRIX = np.array([[0.256788, 0.504129, 0.097906],
                        [-0.148223, -0.290993, 0.439216],
                        [0.439216, -0.367788, -0.071427]], dtype=np.float32)
_YUV_OFFSET = np.array([16.0, 128.0, 128.0], dtype=np.float32)


def rgb_to_yuv420p(image: np.ndarray) -> np.ndarray:
    """H x W x 3 uint8 RGB -> (3H/2) x W uint8 planar YUV 4:2:0 (BT.601, limited range).

    Done here rather than by swscale so that the encoder input is defined by this code alone
    (not by swscale's flags or version). Chroma is the mean of each 2 x 2 block.
    """
    import cv2

    h, w = image.shape[:2]
    yuv = image.reshape(-1, 3).astype(np.float32) @ _YUV_MATRIX.T + _YUV_OFFSET
    yuv = yuv.reshape(h, w, 3)
    chroma = cv2.resize(np.ascontiguousarray(yuv[..., 1:]), (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    flat = np.concatenate([yuv[..., 0].ravel(), chroma[..., 0].ravel(), chroma[..., 1].ravel()])
    return np.clip(flat + 0.5, 0, 255).astype(np.uint8).reshape(h * 3 // 2, w)


def write_video(path: str | Path, frames_iter, *, fps: float, size: int, crf: int = 17) -> None:
    """Encode RGB uint8 frames as H.264 yuv420p mp4, atomically (temporary file, then rename)."""
    import av

    with atomic_path(path, suffix=".tmp.mp4") as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            rate = _fps_fraction(fps)
            stream = container.add_stream("libx264", rate=rate,
                                          options={"crf": str(crf), "preset": "veryfast", "threads": "1",
                                                   "x264-params": "mbtree=0"})
            stream.width = size
            stream.height = size
            stream.pix_fmt = "yuv420p"
            stream.codec_context.thread_count = 1
            for index, image in enumerate(frames_iter):
                frame = av.VideoFrame.from_ndarray(rgb_to_yuv420p(image), format="yuv420p")
                frame.pts = index
                frame.time_base = 1 / rate
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)


def render_video(plan: VideoPlan, path: str | Path) -> None:
    renderer = _Renderer(plan)
    write_video(path, (renderer.frame(t) for t in range(plan.num_frames)), fps=plan.fps, size=plan.size)


def _render_job(plan: VideoPlan, path: str) -> str:
    import cv2

    cv2.setNumThreads(1)
    render_video(plan, path)
    return path


# --------------------------------------------------------------------------- benchmark


def _check_settings(num_train, num_test, size, fps, min_duration, max_duration) -> None:
    if int(num_train) < 0 or int(num_test) < 0 or int(num_train) + int(num_test) == 0:
        raise RgbtadError(f"invalid video counts --train {num_train} --test {num_test}: need >= 0 each, > 0 in all")
    if int(size) < 32 or int(size) % 2:
        raise RgbtadError(f"invalid --size {size}: must be an even number of pixels >= 32 (H.264 4:2:0)")
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and 2.0 <= float(fps) <= 60.0):
        raise RgbtadError(f"invalid --fps {fps}: must be between 2 and 60")
    if not (0 < float(min_duration) <= float(max_duration)):
        raise RgbtadError(f"invalid durations {min_duration}-{max_duration} s: need 0 < min <= max")
    if float(min_duration) < 2 * MIN_GAP_S + MIN_INSTANCE_S + 0.5:
        raise RgbtadError(f"invalid minimum duration {min_duration} s: videos need at least "
                          f"{2 * MIN_GAP_S + MIN_INSTANCE_S + 0.5:.1f} s")


def class_indices(classes: Sequence[str] | None) -> tuple[int, ...] | None:
    """Indices into `CLASSES` of a subset of class names (None: all classes), checked."""
    if classes is None:
        return None
    known = {c.name: i for i, c in enumerate(CLASSES)}
    unknown = [name for name in classes if name not in known]
    if unknown or not classes or len(set(classes)) != len(classes):
        raise RgbtadError(f"invalid class subset {list(classes)}: need distinct names among {', '.join(known)}")
    return tuple(sorted(known[name] for name in classes))


def plan_benchmark(*, num_train: int, num_test: int, seed: int, size: int, fps: float,
                   min_duration: float = DEFAULTS["min_duration"],
                   max_duration: float = DEFAULTS["max_duration"],
                   classes: Sequence[str] | None = None) -> list[VideoPlan]:
    """The plans of every video (timelines, objects, nuisance); no rendering. `classes`: the
    action classes to deal (names; default all); nuisance objects are the same either way."""
    _check_settings(num_train, num_test, size, fps, min_duration, max_duration)
    pool = class_indices(classes)
    plans = []
    for subset_index, (subset, count) in enumerate((("train", num_train), ("test", num_test))):
        keys = [[int(seed), subset_index, index] for index in range(int(count))]
        timelines = [plan_timeline(size=int(size), fps=float(fps), min_duration=float(min_duration),
                                   max_duration=float(max_duration), seed_key=key) for key in keys]
        labels = deal_labels(sum(len(t[1]) for t in timelines), [int(seed), subset_index, 2**20], pool)
        used = 0
        for index, (key, timeline) in enumerate(zip(keys, timelines)):
            n = len(timeline[1])
            plans.append(plan_video(f"synth_{subset}_{index:04d}", subset, labels[used:used + n], timeline,
                                    size=int(size), fps=float(fps), seed_key=key))
            used += n
    return plans


def _annotations(plans: list[VideoPlan], classes: tuple[int, ...] | None) -> dict:
    """ActionFormer annotations; label ids number the benchmark's classes in `CLASSES` order."""
    label_ids = {c: i for i, c in enumerate(range(len(CLASSES)) if classes is None else classes)}
    database = {}
    for plan in plans:
        database[plan.video_id] = {
            "subset": plan.subset,
            "duration": round(plan.num_frames / plan.fps, 6),
            "fps": plan.fps,
            "annotations": [
                {"label": CLASSES[label].name, "label_id": label_ids[label],
                 "segment": [round(a0 / plan.fps, 6), round(a1 / plan.fps, 6)]}
                for a0, a1, label in plan.instances
            ],
        }
    return {"version": FORMAT, "database": database}


def generate_benchmark(out_dir: str | Path, *, num_train: int = DEFAULTS["num_train"],
                       num_test: int = DEFAULTS["num_test"], seed: int = DEFAULTS["seed"],
                       size: int = DEFAULTS["size"], fps: float = DEFAULTS["fps"],
                       min_duration: float = DEFAULTS["min_duration"],
                       max_duration: float = DEFAULTS["max_duration"], workers: int = 1,
                       classes: Sequence[str] | None = None, progress: bool = True) -> Path:
    """Write the benchmark (videos, ``annotations.json``, ``benchmark.json``) into `out_dir`.

    Returns the path of ``annotations.json``. Square ``size x size`` frames at ``fps``;
    video durations uniform in ``[min_duration, max_duration]`` seconds. A finished benchmark
    with the same settings is reused; a folder holding one made with other settings is an
    error. `workers` > 1 renders videos in that many processes (same output). `classes`: a
    subset of the class names to use (default: all twelve).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise RgbtadError(f"{out_dir}: exists and is not a folder")
    settings = {"format": FORMAT, "num_train": int(num_train), "num_test": int(num_test), "seed": int(seed),
                "size": int(size), "fps": float(fps), "min_duration": float(min_duration),
                "max_duration": float(max_duration)}
    pool = class_indices(classes)
    if pool is not None:
        settings["classes"] = [CLASSES[i].name for i in pool]
    plans = plan_benchmark(num_train=num_train, num_test=num_test, seed=seed, size=size, fps=fps,
                           min_duration=min_duration, max_duration=max_duration, classes=classes)
    meta_path, ann_path = out_dir / METADATA_FILE, out_dir / ANNOTATION_FILE
    if meta_path.is_file():
        try:
            old = json.loads(meta_path.read_text()).get("settings")
        except (OSError, json.JSONDecodeError, AttributeError):
            raise RgbtadError(f"{meta_path}: not a readable benchmark description; use another folder") from None
        if old != settings:
            diff = ", ".join(f"{k} {old.get(k)!r} (now {v!r})" for k, v in settings.items()
                             if not isinstance(old, dict) or old.get(k) != v)
            raise RgbtadError(f"{meta_path}: this folder holds a benchmark made with other settings: {diff}; "
                              "use another folder")
        if ann_path.is_file():
            return ann_path
    elif ann_path.exists():
        raise RgbtadError(f"{ann_path}: exists but {METADATA_FILE} is missing; use another folder")

    annotations = _annotations(plans, pool)
    meta = {
        "settings": settings,
        "classes": [asdict(c) for i, c in enumerate(CLASSES) if pool is None or i in pool],
        "statistics": {subset: annotation_statistics(annotations["database"], subset) for subset in SUBSETS
                       if any(p.subset == subset for p in plans)},
        "files": {"annotations": ANNOTATION_FILE, "videos": f"{VIDEO_DIR}/<video_id>.mp4"},
    }
    write_json(meta_path, meta)
    video_dir = out_dir / VIDEO_DIR
    video_dir.mkdir(parents=True, exist_ok=True)
    todo = [p for p in plans if not (video_dir / f"{p.video_id}.mp4").is_file()]
    from tqdm import tqdm

    with tqdm(total=len(todo), desc="synth videos", unit="video", disable=not progress or not todo) as bar:
        if int(workers) > 1 and len(todo) > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn, not fork: a forked child of a process that already ran torch / OpenMP
            # threads can deadlock
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=int(workers), mp_context=context) as pool:
                for _ in pool.map(_render_job, todo, [str(video_dir / f"{p.video_id}.mp4") for p in todo]):
                    bar.update(1)
        else:
            for plan in todo:
                render_video(plan, video_dir / f"{plan.video_id}.mp4")
                bar.update(1)
    write_json(ann_path, annotations)
    return ann_path


# --------------------------------------------------------------------------- statistics


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
        merged: list[list[float]] = []
        for s, e in segs:
            if merged and s <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e])
        if v["duration"] > 0:
            coverage.append(sum(e - s for s, e in merged) / float(v["duration"]))
        gaps += [merged[i + 1][0] - merged[i][1] for i in range(len(merged) - 1)]

    def summary(values: list[float]) -> dict:
        if not values:
            return {"count": 0}
        a = np.asarray(values, dtype=np.float64)
        p = np.percentile(a, [5, 10, 25, 50, 75, 90, 95])
        return {"count": int(a.size), "mean": round(float(a.mean()), 3), "min": round(float(a.min()), 3),
                "p5": round(float(p[0]), 3), "p10": round(float(p[1]), 3), "p25": round(float(p[2]), 3),
                "median": round(float(p[3]), 3), "p75": round(float(p[4]), 3), "p90": round(float(p[5]), 3),
                "p95": round(float(p[6]), 3), "max": round(float(a.max()), 3)}

    return {
        "videos": len(videos),
        "video_duration_s": summary(durations),
        "instances_per_video": summary(counts),
        "instance_duration_s": summary(lengths),
        "coverage": summary(coverage),
        "gap_s": summary(gaps),
        "classes_per_video": summary(classes_per_video),
        "instances_per_class": dict(sorted(per_class.items())),
    }


def load_class_specs() -> list[dict]:
    """The class list as plain dicts (name, family, description, cue, partner), label-id order."""
    return [asdict(c) for c in CLASSES]
