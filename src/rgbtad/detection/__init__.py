"""The ActionFormer detector: blocks, projection/encoder, neck, heads, label assignment,
losses and post-processing (decode + NMS), laid out by anatomy.

``build_detector(cfg, num_classes)`` is the entry point used by training, inference and the
run directory.
"""

from rgbtad.detection.model import ActionFormer, DetectorOutput, build_detector_from_config
from rgbtad.detection.postprocess import NMSConfig


def build_detector(cfg, num_classes: int) -> ActionFormer:
    """The detector described by ``cfg`` (an ``rgbtad.config.Config``) for ``num_classes``."""
    return build_detector_from_config(cfg, num_classes)


__all__ = ["ActionFormer", "DetectorOutput", "NMSConfig", "build_detector"]
