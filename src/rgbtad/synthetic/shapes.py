"""An object's outline and texture coordinates at a moment of its motion.

Everything works in the object's local pixel coordinates ``X, Y`` (arrays, relative to its
centre, y down) and at ``tau``, the frames of internal motion so far (`Track` modes: an
"action" object moves only during its action; look-alikes and wanderers keep a frozen state).
Outlines are signed distances in pixels, positive inside, so the renderer antialiases them
(and draws their border) with a clip.
"""

from __future__ import annotations

import math

import numpy as np

from rgbtad.synthetic.plan import Track


def window_distance(family: str, p: dict, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Signed distance to the static window of a textured family (belt, lift, wheel, tile)."""
    if family in ("belt", "lift"):
        return np.minimum(p["hw"] - np.abs(X), p["hh"] - np.abs(Y))
    if family == "wheel":
        return p["r"] - np.sqrt(X * X + Y * Y)
    return (p["a"] - np.abs(X) - np.abs(Y)) / math.sqrt(2.0)  # tile: diamond


def texture_coords(track: Track, tau: float, X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each pixel samples the texture: the texture moves, the window stays."""
    p = track.params
    if track.family == "wheel":
        sense = p.get("sense", 1)
        angle = sense * p.get("rim_speed", 0.0) / p["r"] * tau if track.mode == "action" else tau * 0.1
        ca, sa = math.cos(angle), math.sin(angle)
        # a point of the texture at local angle phi shows at phi + angle (clockwise on
        # screen, y down, for sense +1); sample by the inverse rotation.
        return ca * X + sa * Y, -sa * X + ca * Y
    if track.mode == "action" and "axis" in p:  # shake
        off = p["amplitude"] * math.sin(2 * math.pi * tau / p["period"])
        ox, oy = p["axis"][0] * off, p["axis"][1] * off
    elif track.mode == "action":
        ox, oy = p["velocity"][0] * tau, p["velocity"][1] * tau
    else:
        ox, oy = 3.7 * tau, 1.3 * tau  # a frozen, arbitrary texture position
    return X - ox, Y - oy


def _ball(p: dict, tau: float, active: bool, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    period = p["hop_period"]
    phase = (tau / period) % 1.0 if active else 0.0
    lift = 4 * p["hop"] * phase * (1 - phase)  # parabolic hop
    by = p["hop"] / 2 - lift
    return p["r"] - np.sqrt(X * X + (Y - by) ** 2)


def _ring(p: dict, tau: float, active: bool, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    phase = tau / p["period"] if active else 0.0
    radius = p["r0"] + p["grow"] * 0.5 * (1 - math.cos(2 * math.pi * phase))
    return p["width"] / 2 - np.abs(np.sqrt(X * X + Y * Y) - radius)


def _bar(p: dict, tau: float, active: bool, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    angle = p["angle0"] + (p["swing"] * math.sin(2 * math.pi * tau / p["period"]) if active else 0.0)
    # pivot at one end, placed so that the bar's midpoint starts at the centre
    px_, py_ = -math.cos(p["angle0"]) * p["length"] / 2, -math.sin(p["angle0"]) * p["length"] / 2
    ex, ey = math.cos(angle) * p["length"], math.sin(angle) * p["length"]
    qx, qy = X - px_, Y - py_
    h = np.clip((qx * ex + qy * ey) / (ex * ex + ey * ey), 0.0, 1.0)
    return p["width"] / 2 - np.sqrt((qx - h * ex) ** 2 + (qy - h * ey) ** 2)


def _blob(p: dict, tau: float, active: bool, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    h_ = p["half"]
    if p["cross"]:
        return np.maximum(np.minimum(h_ - np.abs(X), h_ / 3 - np.abs(Y)),
                          np.minimum(h_ / 3 - np.abs(X), h_ - np.abs(Y)))
    return np.minimum(h_ - np.abs(X), h_ - np.abs(Y))


def _dots(p: dict, tau: float, active: bool, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    angle = p["phase0"] + (p["omega"] * tau if active else 0.0)
    dx, dy = math.cos(angle) * p["orbit"], math.sin(angle) * p["orbit"]
    d1 = p["dot_r"] - np.sqrt((X - dx) ** 2 + (Y - dy) ** 2)
    d2 = p["dot_r"] - np.sqrt((X + dx) ** 2 + (Y + dy) ** 2)
    return np.maximum(d1, d2)


_PLAIN_SHAPES = {"ball": _ball, "ring": _ring, "bar": _bar, "blob": _blob, "dots": _dots}


def plain_distance(track: Track, tau: float, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Signed distance to a plain object (ball, ring, bar, dots, blob), moving during its action."""
    return _PLAIN_SHAPES[track.family](track.params, tau, track.mode == "action", X, Y)
