"""The frames of a video plan, and its H.264 file.

A frame is the drifting background, the objects on screen drawn over it in plan order
(antialiased outline, a border, a moving texture or a plain shading), then camera jitter,
flicker, Gaussian blur and pixel noise. The renderer's random stream
(``SeedSequence(seed_key + [2])``) only draws the jitter and the noise, frame after frame, so
the frames of a plan are the same on every run. The file is encoded by
`rgbtad.video.encode.write_h264` in its deterministic mode, from the exact RGB to YUV 4:2:0
conversion `rgbtad.video.encode.rgb_to_yuv420p`, so the same plan gives the same bytes.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from rgbtad.synthetic.classes import TEXTURED_FAMILIES
from rgbtad.synthetic.objects import scale
from rgbtad.synthetic.plan import Track, VideoPlan
from rgbtad.synthetic.shapes import plain_distance, texture_coords, window_distance
from rgbtad.synthetic.textures import periodic_texture
from rgbtad.video.encode import rgb_to_yuv420p, write_h264

#: x264 quality of the benchmark videos (near transparent at 64 px)
CRF = 17
PRESET = "veryfast"


def _paint(region: np.ndarray, d: np.ndarray, fill: np.ndarray, border: np.ndarray, border_w: float) -> None:
    """Blend an object of signed distance `d` into `region` (in place): `fill` inside, a
    `border_w`-pixel `border` along the outline, antialiased over one pixel."""
    alpha = np.clip(d + 0.5, 0.0, 1.0)[..., None]
    inner = np.clip(d - border_w + 0.5, 0.0, 1.0)[..., None]
    colour = border + (fill - border) * inner
    region += (colour - region) * alpha


class Renderer:
    """Draws the frames of one plan (float32 H x W x 3 in 0..255), in order."""

    def __init__(self, plan: VideoPlan):
        import cv2

        self.cv2 = cv2
        self.plan = plan
        self.size = plan.size
        self.rng = np.random.default_rng(np.random.SeedSequence(plan.render_seed))
        sc = plan.scene
        tex = periodic_texture(np.random.default_rng(sc["bg_texture_seed"]), self.size, tuple(sc["bg_wavelength"]))
        tex = 0.5 + (tex - 0.5) * sc["bg_contrast"]
        light, dark = np.array(sc["bg_light"], np.float32), np.array(sc["bg_dark"], np.float32)
        self.background = (dark + (light - dark) * tex[..., None]).astype(np.float32)
        self.textures: dict[int, np.ndarray] = {}
        ys, xs = np.mgrid[0:self.size, 0:self.size].astype(np.float32)
        self.xs, self.ys = xs + 0.5, ys + 0.5  # pixel centres
        self.jitter = np.zeros(2)
        self.tex_size = max(16, int(round(48 * scale(self.size))))

    def _texture(self, params: dict) -> np.ndarray:
        key = params["texture_seed"]
        if key not in self.textures:
            kind = params.get("stripes")
            self.textures[key] = periodic_texture(np.random.default_rng(key), self.tex_size,
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

    def _texture_values(self, track: Track, tau: float, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        """Texture brightness (0..1) under each pixel of a textured object."""
        cv2 = self.cv2
        p = track.params
        u, v = texture_coords(track, tau, X, Y)
        tex = self._texture(p)
        n = float(tex.shape[0])
        mapx = np.mod(u + n / 2, n).astype(np.float32)
        mapy = np.mod(v + n / 2, n).astype(np.float32)
        val = cv2.remap(tex, mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
        if track.family == "wheel":  # spokes (soft sectors, slightly twisted) over fine noise
            theta = np.arctan2(v, u) + p["spoke_twist"] * np.sqrt(u * u + v * v)
            val = 0.65 * (0.5 + 0.5 * np.sin(p["spokes"] * theta)) + 0.35 * val
        return val

    def _draw(self, frame: np.ndarray, track: Track, t: int) -> None:
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
        light, dark = np.array(p["light"], np.float32), np.array(p["dark"], np.float32)
        if track.family in TEXTURED_FAMILIES:
            d = window_distance(track.family, p, X, Y)
            fill = dark + (light - dark) * self._texture_values(track, tau, X, Y)[..., None]
        else:
            d = plain_distance(track, tau, X, Y)
            # plain objects: a soft vertical shading of one colour
            shade = np.clip(0.5 - Y / (2 * track.radius + 1e-6), 0.0, 1.0)[..., None]
            fill = light * (0.85 + 0.15 * shade)
        _paint(frame[y0:y1, x0:x1], d, fill, np.array(p["border"], np.float32), 1.0 * scale(self.size))

    # -- frames -----------------------------------------------------------------------------

    def frame(self, t: int) -> np.ndarray:
        """Frame `t` as uint8 RGB; frames must be asked for in order (jitter and noise are drawn
        frame after frame)."""
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
            self.jitter = np.clip(self.jitter, -3 * scale(size), 3 * scale(size))
            m = np.array([[1, 0, self.jitter[0]], [0, 1, self.jitter[1]]], np.float32)
            frame = cv2.warpAffine(frame, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        if sc["flicker"] > 0:
            frame *= 1.0 + sc["flicker"] * math.sin(2 * math.pi * t / sc["flicker_period"])
        frame = cv2.GaussianBlur(frame, (0, 0), sc["blur"])
        frame += self.rng.standard_normal(frame.shape, dtype=np.float32) * np.float32(sc["noise"])
        return np.clip(frame + 0.5, 0, 255).astype(np.uint8)


def render_frames(plan: VideoPlan) -> np.ndarray:
    """All frames of a plan as ``N x size x size x 3`` uint8 RGB (what the mp4 encodes)."""
    renderer = Renderer(plan)
    return np.stack([renderer.frame(t) for t in range(plan.num_frames)])


def render_video(plan: VideoPlan, path: str | Path) -> None:
    """Render a plan into an H.264 mp4 at `path` (atomically; same plan, same bytes)."""
    renderer = Renderer(plan)
    frames = (rgb_to_yuv420p(renderer.frame(t)) for t in range(plan.num_frames))
    write_h264(path, frames, fps=plan.fps, width=plan.size, height=plan.size, crf=CRF, preset=PRESET,
               deterministic=True)


def render_job(plan: VideoPlan, path: str) -> str:
    """`render_video` in a worker process (OpenCV single-threaded: the workers share the cores)."""
    import cv2

    cv2.setNumThreads(1)
    render_video(plan, path)
    return path
