"""The random parameters of one object: shape and colours by family, motion by class.

Geometry and speeds are defined for 64-pixel frames (`REF_SIZE`) and scaled with the frame
size; speeds are in pixels per second (at 64 px) and converted to pixels per frame with the
frame rate. Speeds are 0.5 to 3 pixels per frame at 64 px and 10 fps, which DIS flow follows.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rgbtad.synthetic.classes import FAMILY_HUES, FAMILY_TEXTURE, TEXTURED_FAMILIES
from rgbtad.synthetic.textures import random_colours

REF_SIZE = 64.0


def scale(size: int) -> float:
    """Pixels of a `size`-pixel frame per pixel of the 64-pixel reference frame."""
    return size / REF_SIZE


def _texture_params(rng: np.random.Generator, family: str, s: float) -> dict[str, Any]:
    p: dict[str, Any] = {"texture_seed": int(rng.integers(2**31))}
    p["wavelength"] = [5.0 * s, 12.0 * s] if family == "tile" else [3.5 * s, 9.0 * s]
    if FAMILY_TEXTURE[family] in ("vertical", "horizontal"):
        p["stripes"] = FAMILY_TEXTURE[family]
    if family == "wheel":
        p["spokes"] = int(rng.integers(5, 9))
        p["spoke_twist"] = float(rng.uniform(-0.15, 0.15) / s)  # radians per pixel of radius
    return p


def _shape_params(rng: np.random.Generator, family: str, s: float, fps: float, p: dict[str, Any]) -> float:
    """Draw the family's geometry (and the motion of plain families) into `p`; returns the
    object's bounding radius."""
    if family == "belt":
        p["hw"], p["hh"] = rng.uniform(9, 13) * s, rng.uniform(5, 7) * s
        return math.hypot(p["hw"], p["hh"])
    if family == "lift":
        p["hw"], p["hh"] = rng.uniform(5, 7) * s, rng.uniform(9, 13) * s
        return math.hypot(p["hw"], p["hh"])
    if family == "wheel":
        p["r"] = rng.uniform(8, 12) * s
        return p["r"]
    if family == "tile":
        p["a"] = rng.uniform(10, 14) * s  # half diagonal of the diamond
        return p["a"]
    if family == "ball":
        p["r"] = rng.uniform(5, 7) * s
        p["hop"] = rng.uniform(8, 14) * s
        p["hop_period"] = rng.uniform(0.6, 1.0) * fps  # frames
        return p["r"] + p["hop"] / 2 + 1
    if family == "ring":
        p["r0"] = rng.uniform(4, 6) * s
        p["grow"] = rng.uniform(5, 8) * s
        p["width"] = rng.uniform(2.5, 3.5) * s
        p["period"] = rng.uniform(1.0, 1.8) * fps
        return p["r0"] + p["grow"] + p["width"] / 2
    if family == "bar":
        p["length"] = rng.uniform(14, 20) * s
        p["width"] = rng.uniform(4.0, 5.0) * s
        p["angle0"] = rng.uniform(0, 2 * math.pi)
        p["swing"] = math.radians(rng.uniform(40, 70))
        p["period"] = rng.uniform(0.8, 1.6) * fps
        # the far end swings up to ~0.95 length from the centre (pivot at half a length)
        return p["length"] + p["width"] / 2
    if family == "dots":
        p["dot_r"] = rng.uniform(3.0, 4.0) * s
        p["orbit"] = rng.uniform(6, 10) * s
        p["phase0"] = rng.uniform(0, 2 * math.pi)
        speed = rng.uniform(12, 24) * s / fps  # rim speed, px / frame
        p["omega"] = speed / p["orbit"] * (1 if rng.random() < 0.5 else -1)
        return p["orbit"] + p["dot_r"]
    if family == "blob":  # a distractor that belongs to no class: a plain square or cross
        p["half"] = rng.uniform(3.5, 6.0) * s
        p["cross"] = bool(rng.random() < 0.5)
        return p["half"] * math.sqrt(2)
    raise ValueError(family)  # pragma: no cover - internal


def object_params(rng: np.random.Generator, family: str, s: float, fps: float) -> tuple[dict, float]:
    """Appearance (and the motion-independent geometry) of one object; returns (params, radius)."""
    p: dict[str, Any] = {}
    light, dark = random_colours(rng, FAMILY_HUES.get(family))
    p["light"], p["dark"] = light.tolist(), dark.tolist()
    p["border"] = (dark * rng.uniform(0.3, 0.6)).tolist()
    if family in TEXTURED_FAMILIES:
        p.update(_texture_params(rng, family, s))
    radius = _shape_params(rng, family, s, fps, p)
    return p, radius + 1.0


def _diagonal(rng: np.random.Generator) -> float:
    """One of the four diagonal directions, within 15 degrees (the tiles move diagonally,
    the belts horizontally and the lifts vertically)."""
    return math.pi / 4 + math.pi / 2 * int(rng.integers(4)) + math.radians(rng.uniform(-15, 15))


def action_motion(rng: np.random.Generator, name: str, s: float, fps: float) -> dict:
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


def wander_params(rng: np.random.Generator, s: float, fps: float) -> dict:
    """A smooth bounded random path: slow (at most ~7 px/s at 64 px) translation."""
    amp = rng.uniform(3, 6) * s
    max_speed = rng.uniform(3, 7) * s / fps
    omega = max_speed / amp  # rad / frame, so that amp * omega = max speed per axis
    return {"amp": amp, "omega": [omega * rng.uniform(0.6, 1.0), omega * rng.uniform(0.6, 1.0)],
            "phase": [rng.uniform(0, 2 * math.pi), rng.uniform(0, 2 * math.pi)]}
