"""The random appearance of the benchmark: periodic band-pass textures and colour pairs.

Textures tile seamlessly (they are periodic), so a texture that moves inside a window is
sampled with wrap-around; the renderer caches each one by its seed.
"""

from __future__ import annotations

import colorsys

import numpy as np


def random_colours(rng: np.random.Generator, hue: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A light and a dark colour (RGB in 0..255) of about `hue`, or of a random hue."""
    hue = rng.random() if hue is None else (hue + rng.uniform(-0.03, 0.03)) % 1.0
    light = np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.45, 0.7), rng.uniform(0.8, 1.0))) * 255
    dark = np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.7, 0.9), rng.uniform(0.15, 0.3))) * 255
    return light.astype(np.float32), dark.astype(np.float32)


def periodic_texture(rng: np.random.Generator, n: int, wavelength: tuple[float, float],
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
