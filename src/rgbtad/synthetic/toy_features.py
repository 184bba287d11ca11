"""A small generated feature set with detectable actions, for examples and end-to-end tests.

Each video is a sequence of snippet features (T x C, float32) in which every action instance
adds its class prototype to the background noise, with a short ramp at both ends so that
boundaries are soft as in real features. The annotation file is ActionFormer JSON with
subsets `train` and `test`, so the result is used exactly like real THUMOS14 features.
This is not the built-in video benchmark (`rgbtad synth`), only a fast stand-in on features.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rgbtad.core.atomic import write_json, write_npy

TOY_FPS = 30.0
TOY_FEAT_STRIDE = 4
TOY_NUM_FRAMES = 16


def make_toy_features(out_dir: str | Path, *, num_train: int = 40, num_test: int = 20,
                      num_classes: int = 4, dim: int = 64, seed: int = 0,
                      min_len: int = 160, max_len: int = 320) -> Path:
    """Write `features/<vid>.npy` and `annotations.json` under `out_dir`; return the annotation path."""
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    prototypes = rng.normal(size=(num_classes, dim)).astype(np.float32)
    prototypes /= np.linalg.norm(prototypes, axis=1, keepdims=True)
    class_names = [f"action_{k}" for k in range(num_classes)]
    database = {}
    for subset, count in (("train", num_train), ("test", num_test)):
        for index in range(count):
            video_id = f"toy_{subset}_{index:04d}"
            length = int(rng.integers(min_len, max_len + 1))
            feats = rng.normal(scale=1.0, size=(length, dim)).astype(np.float32)
            annotations = []
            cursor = int(rng.integers(5, 30))
            while True:
                duration = int(rng.integers(8, 48))
                if cursor + duration >= length - 2:
                    break
                label_id = int(rng.integers(num_classes))
                ramp = np.minimum(1.0, np.minimum(
                    np.arange(1, duration + 1), np.arange(duration, 0, -1)) / 3.0)
                feats[cursor:cursor + duration] += 3.0 * ramp[:, None] * prototypes[label_id]
                # snippet i is centred at (i * stride + num_frames / 2) / fps seconds
                start = (cursor * TOY_FEAT_STRIDE + 0.5 * TOY_NUM_FRAMES) / TOY_FPS
                end = ((cursor + duration - 1) * TOY_FEAT_STRIDE + 0.5 * TOY_NUM_FRAMES) / TOY_FPS
                annotations.append({
                    "label": class_names[label_id], "label_id": label_id,
                    "segment": [round(start, 3), round(end, 3)],
                })
                cursor += duration + int(rng.integers(10, 60))
            write_npy(out_dir / "features" / f"{video_id}.npy", feats)
            num_video_frames = (length - 1) * TOY_FEAT_STRIDE + TOY_NUM_FRAMES
            database[video_id] = {
                "subset": subset,
                "duration": round(num_video_frames / TOY_FPS, 3),
                "fps": TOY_FPS,
                "annotations": annotations,
            }
    ann_path = out_dir / "annotations.json"
    write_json(ann_path, {"version": "rgbtad-toy-features", "database": database})
    return ann_path
