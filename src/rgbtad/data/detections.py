"""Detections: what every detector's post-processing returns, one typed structure per video.

`Detections` holds the arrays of one video (label ids, best first); `Detection` is one of
them with its class named. The other forms are conversions of these, each written once:
the ActivityNet results layout of `rgbtad infer` and `rgbtad detect` (`Detection.to_result`,
`Detections.to_results`; read back by `rgbtad.data.results`) and the evaluator's columns
(`rgbtad.evaluation.predictions.Predictions`, built from those results).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Detection", "Detections"]


@dataclass(frozen=True)
class Detection:
    """One detected action: class name, confidence, start and end in seconds."""

    label: str
    score: float
    start: float
    end: float

    def to_result(self) -> dict:
        """The ActivityNet results layout: ``{"label", "score", "segment": [start, end]}``."""
        return {"label": self.label, "score": self.score, "segment": [self.start, self.end]}


@dataclass(frozen=True, eq=False)
class Detections:
    """The detections of one video, best first: ``segments`` N x 2 (start, end in seconds),
    ``scores`` N, ``labels`` N (label ids into the detector's classes), as NumPy arrays."""

    video_id: str
    segments: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        count = len(self.scores)
        if self.segments.shape != (count, 2) or self.labels.shape != (count,) or self.scores.shape != (count,):
            raise ValueError(f"{self.video_id}: segments {self.segments.shape}, scores {self.scores.shape} and "
                             f"labels {self.labels.shape} do not describe the same N detections")

    def __len__(self) -> int:
        return len(self.scores)

    def named(self, class_names: list[str], min_score: float | None = None) -> list[Detection]:
        """The detections (those scoring at least `min_score` when given), classes named after
        `class_names`."""
        return [Detection(class_names[int(label)], float(score), float(seg[0]), float(seg[1]))
                for seg, score, label in zip(self.segments, self.scores, self.labels)
                if min_score is None or score >= min_score]

    def to_results(self, class_names: list[str]) -> list[dict]:
        """In the ActivityNet results layout (`Detection.to_result`)."""
        return [d.to_result() for d in self.named(class_names)]
