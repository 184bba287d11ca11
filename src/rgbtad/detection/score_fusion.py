"""Score fusion: class-agnostic detections x video-level class scores -> class-aware
detections, as ActionFormer's ActivityNet setting and G-TAD's THUMOS setting do it.

For each video, in the releases' order of operations:

1. its detections sorted by score, best first, and the first `num_pred` kept (ActionFormer's
   ``results_to_array``; G-TAD's ``min(num_prop, len(df))`` of the sorted proposals);
2. its `top_k` classes by video-level score (`rgbtad.detection.video_scores`);
3. every kept segment copied once per top class, labelled with that class, scored by `combine`
   and laid out as its release does:

   * ``"sqrt_product"`` (ActionFormer, ``libs/utils/postprocessing.py::postprocess_results``):
     ``sqrt(class_score * detection_score)``, laid out class by class (all segments with the
     best class, then all with the second ...);
   * ``"product"`` (G-TAD, ``gtad_postprocess.py::_gen_detection_video``):
     ``detection_score * class_score``, laid out segment by segment (each segment with its
     best class, then with its second ...).

4. the result sorted by score, best first (as every `Detections`), stably: the releases
   write the layout unsorted, their evaluators sort it by score, so only the order of equal
   scores could tell the two apart, and it is the release's layout in both.

The detector's own labels are dropped: both releases fuse class-agnostic detections. In
steps 1 and 2, of equal scores the later index comes first, as the releases' reversed
ascending sorts give (G-TAD's sorted tuples; ActionFormer's ``argsort()[::-1]``). Scores are float64;
G-TAD rounds them to 6 decimals when it writes its JSON, rgbtad does not (it differs by at
most 5e-7). G-TAD's clipping and rounding of segments to 0.1 s belong to its decoding, not
to the fusion: segments are copied unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rgbtad.config.sections import TestConfig
from rgbtad.core.errors import RgbtadError
from rgbtad.data.detections import Detections
from rgbtad.detection.video_scores import VideoScores, load_video_scores

__all__ = ["COMBINES", "ScoreFusion", "fuse_video_scores", "score_fusion"]

#: the ways of combining a detection's score with its video's class score (module doc)
COMBINES = ("sqrt_product", "product")


def _best_first(scores: np.ndarray) -> np.ndarray:
    return np.argsort(scores, kind="stable")[::-1]


def fuse_video_scores(detections: Detections, class_scores: np.ndarray, top_k: int = 2,
                      combine: str = "sqrt_product", num_pred: int = 200) -> Detections:
    """The class-aware detections of one video from its class-agnostic `detections` and its
    `class_scores` (one per class, indexed by label id); see the module doc."""
    class_scores = np.asarray(class_scores, dtype=np.float64)
    if combine not in COMBINES:
        raise RgbtadError(f"score fusion: combine {combine!r} is not one of {list(COMBINES)}")
    if not 0 < top_k <= len(class_scores):
        raise RgbtadError(f"{detections.video_id}: top_k {top_k} of {len(class_scores)} classes")
    if num_pred <= 0:
        raise RgbtadError(f"score fusion: num_pred must be positive, got {num_pred}")
    if combine == "sqrt_product" and (class_scores < 0).any():
        raise RgbtadError(f"{detections.video_id}: negative class score, sqrt_product needs scores >= 0")
    kept = _best_first(detections.scores)[:num_pred]
    segments, scores = detections.segments[kept], detections.scores[kept].astype(np.float64)
    classes = _best_first(class_scores)[:top_k]
    count = len(kept)
    if combine == "sqrt_product":
        fused = np.sqrt(class_scores[classes][:, None] * scores[None, :]).reshape(-1)  # top_k x count
        segments, labels = np.tile(segments, (top_k, 1)), np.repeat(classes, count)
    else:
        fused = (scores[:, None] * class_scores[classes][None, :]).reshape(-1)  # count x top_k
        segments, labels = np.repeat(segments, top_k, axis=0), np.tile(classes, count)
    best = np.argsort(-fused, kind="stable")  # best first; equal scores keep the release's layout
    return Detections(detections.video_id, segments[best], fused[best], labels[best])


@dataclass(frozen=True, eq=False)
class ScoreFusion:
    """A class score file with the settings to fuse it into every video's detections; the
    fused labels are ids into `class_names`."""

    table: VideoScores
    top_k: int = 2
    combine: str = "sqrt_product"
    num_pred: int = 200

    @property
    def class_names(self) -> list[str]:
        return list(self.table.classes)

    def apply(self, detections: Detections) -> Detections:
        return fuse_video_scores(detections, self.table.for_video(detections.video_id), self.top_k,
                                 self.combine, self.num_pred)


def score_fusion(test: TestConfig, class_names: list[str] | None) -> ScoreFusion | None:
    """The fusion of ``test.ext_score_file`` (None when unset), its columns ordered as
    `class_names` (the dataset's classes; None or empty: the file's own named classes)."""
    if not test.ext_score_file:
        return None
    table = load_video_scores(test.ext_score_file).aligned(list(class_names) if class_names else None)
    if test.ext_score_top_k > table.num_classes:
        raise RgbtadError(f"config key 'test.ext_score_top_k' ({test.ext_score_top_k}) exceeds the "
                          f"{table.num_classes} classes of {test.ext_score_file}")
    return ScoreFusion(table, test.ext_score_top_k, test.ext_score_combine, test.ext_score_num_pred)
