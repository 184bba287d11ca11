"""What is on screen in one video: the action objects, the nuisance objects and the scene.

**Nuisance.** A textured background that drifts slowly; camera jitter (a damped random walk of
the whole frame, per-video strength, none in some videos); static look-alikes (a textured
object sitting still, either for a few seconds in the background between actions or for the
whole video); wanderers (textured look-alikes, or plain squares and crosses of no class, that
translate as a whole, slowly, outside actions). The plain objects of the appearance classes
get no look-alikes, so that appearance alone finds them. The action object itself sits still
for up to 0.6 s before and after its action (so presence alone does not give the boundaries).
Slow global illumination changes; Gaussian blur and pixel noise (per-video strength); H.264
compression.

A plan is drawn from its own random stream, ``SeedSequence(seed_key + [1])``, and holds every
random choice but the per-frame camera jitter and pixel noise (the renderer's stream).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rgbtad.synthetic.classes import CLASSES, TEXTURED_FAMILIES
from rgbtad.synthetic.objects import action_motion, object_params, scale, wander_params
from rgbtad.synthetic.textures import random_colours

MAX_LEAD_S = 0.6          # the action object sits still up to this long before / after
DISTRACTOR_EVERY_S = 10.0  # mean background time per distractor event
PERSISTENT_LOOKALIKE_PROB = 0.2

Occupied = list[tuple[tuple[float, float], float]]  # (centre, radius) of objects to keep clear of


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


def place(rng: np.random.Generator, size: int, radius: float, avoid: Occupied, tries: int = 60) -> tuple[float, float]:
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


def _instances(lengths: list[int], gaps: list[int], labels: list[int]) -> list[tuple[int, int, int]]:
    """(start, end, label) frames of the instances laid out by a timeline."""
    instances = []
    t = gaps[0]
    for i, length in enumerate(lengths):
        instances.append((t, t + length, int(labels[i])))
        t += length + gaps[i + 1]
    return instances


def _persistent_lookalike(rng: np.random.Generator, num_frames: int, size: int, s: float, fps: float) -> Track:
    """A static textured look-alike present during the whole video."""
    family = TEXTURED_FAMILIES[int(rng.integers(len(TEXTURED_FAMILIES)))]
    params, radius = object_params(rng, family, s, fps)
    params["state"] = float(rng.uniform(0, 100))
    center = place(rng, size, radius, [])
    return Track(family, "still", 0, num_frames, center, radius, params)


def _action_tracks(rng: np.random.Generator, instances: list[tuple[int, int, int]], gaps: list[int],
                   occupied: Occupied, size: int, s: float, fps: float) -> list[Track]:
    """The action objects, each with a still lead-in / lead-out inside its neighbouring gaps."""
    tracks = []
    for i, (a0, a1, label) in enumerate(instances):
        spec = CLASSES[label]
        params, radius = object_params(rng, spec.family, s, fps)
        params.update(action_motion(rng, spec.name, s, fps))
        gap_before, gap_after = gaps[i], gaps[i + 1]
        lead_in = int(round(rng.uniform(0, 1) * min(MAX_LEAD_S * fps, 0.45 * gap_before)))
        lead_out = int(round(rng.uniform(0, 1) * min(MAX_LEAD_S * fps, 0.45 * gap_after)))
        center = place(rng, size, radius, occupied)
        tracks.append(Track(spec.family, "action", a0 - lead_in, a1 + lead_out, center, radius, params,
                            act_start=a0, act_end=a1))
    return tracks


def _distractor(rng: np.random.Generator, start: int, length: int, occupied: Occupied, size: int, s: float,
                fps: float) -> Track:
    """A still look-alike or a wanderer on frames ``[start, start + length)``.

    Still look-alikes and wanderers are of the textured families (their actions differ from
    them only by the motion of the texture); wanderers may also be plain blobs of no class.
    The plain objects of the appearance classes get no look-alikes.
    """
    mode = "still" if rng.random() < 0.5 else "wander"
    families = TEXTURED_FAMILIES if mode == "still" else TEXTURED_FAMILIES + ("blob",) * 2
    family = families[int(rng.integers(len(families)))]
    params, radius = object_params(rng, family, s, fps)
    params["state"] = float(rng.uniform(0, 100))
    if mode == "wander":
        params["path"] = wander_params(rng, s, fps)
        radius += params["path"]["amp"] * math.sqrt(2)
    center = place(rng, size, radius, occupied)
    return Track(family, mode, start, start + length, center, radius, params)


def _distractor_tracks(rng: np.random.Generator, busy: list[tuple[int, int]], num_frames: int,
                       occupied: Occupied, size: int, s: float, fps: float) -> list[Track]:
    """Distractor events (Poisson, one per `DISTRACTOR_EVERY_S` on average) in the background
    spans between the `busy` ``[start, end)`` spans of the action objects."""
    tracks = []
    bounds = [0] + [b for span in busy for b in span] + [num_frames]
    for j in range(0, len(bounds), 2):
        lo, hi = bounds[j], bounds[j + 1]
        room = hi - lo
        if room < fps:
            continue
        count = int(rng.poisson(room / (DISTRACTOR_EVERY_S * fps)))
        cursor = lo
        for _ in range(count):
            length = int(round(rng.uniform(1.0, 5.0) * fps))
            start_max = hi - length
            if start_max <= cursor:
                break
            start = int(rng.integers(cursor, start_max + 1))
            tracks.append(_distractor(rng, start, length, occupied, size, s, fps))
            cursor = start + length + 1
    return tracks


def _scene(rng: np.random.Generator, s: float, fps: float) -> dict[str, Any]:
    """Background colours, texture and drift; camera jitter, blur, noise and flicker strengths."""
    light, dark = random_colours(rng)
    grey = rng.uniform(0.2, 0.5)
    bg_angle = rng.uniform(0, 2 * math.pi)
    bg_speed = rng.uniform(1.0, 4.0) * s / fps
    return {
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


def plan_video(video_id: str, subset: str, labels: list[int], timeline: tuple[int, list[int], list[int]], *,
               size: int, fps: float, seed_key: list[int]) -> VideoPlan:
    """Draw the objects and nuisance of one video (its timeline and labels are given)."""
    rng = np.random.default_rng(np.random.SeedSequence(list(seed_key) + [1]))
    s = scale(size)
    num_frames, lengths, gaps = timeline
    instances = _instances(lengths, gaps, labels)
    tracks: list[Track] = []
    occupied: Occupied = []
    if rng.random() < PERSISTENT_LOOKALIKE_PROB:
        lookalike = _persistent_lookalike(rng, num_frames, size, s, fps)
        tracks.append(lookalike)
        occupied.append((lookalike.center, lookalike.radius))
    actions = _action_tracks(rng, instances, gaps, occupied, size, s, fps)
    tracks += actions
    tracks += _distractor_tracks(rng, [(a.start, a.end) for a in actions], num_frames, occupied, size, s, fps)
    scene = _scene(rng, s, fps)
    return VideoPlan(video_id, subset, num_frames, fps, size, instances, tracks, scene,
                     render_seed=list(seed_key) + [2])
