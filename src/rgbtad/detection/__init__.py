"""Temporal action detection on snippet features: blocks, projection/encoder, neck, heads,
label assignment, losses and post-processing (decode + NMS), laid out by anatomy; the
`Detector` protocol every model implements and the model registry (`build_model`).

Families: ActionFormer (`rgbtad.detection.actionformer`, registered as "actionformer") and
TriDet (`rgbtad.detection.tridet`, registered as "tridet"), G-TAD (`rgbtad.detection.gtad`,
registered as "gtad"), TadTR (`rgbtad.detection.tadtr`, registered as "tadtr").
``build_model(cfg, num_classes)`` is the entry point of training, inference and the run
directory (students need ``import rgbtad.distill`` first, see `rgbtad.detection.registry`);
``build_detector(cfg, num_classes)`` is the plain detector of a config whatever its
distillation method.
"""

from rgbtad.detection.actionformer import ActionFormer, ActionFormerSpec, PyramidHead
from rgbtad.detection.gtad import GTAD, GTADOutput, GTADSpec
from rgbtad.detection.postprocess import NMSConfig
from rgbtad.detection.protocol import Detector, DetectorOutput, PyramidDetector
from rgbtad.detection.registry import (
                                       build_detector,
                                       build_model,
                                       model_name,
                                       register_model,
                                       registered_models,
                                       seq_len_holding,
)
from rgbtad.detection.tadtr import TadTR, TadTROutput, TadTRSpec
from rgbtad.detection.trident import TriDetOutput
from rgbtad.detection.tridet import TriDet, TriDetSpec

__all__ = ["ActionFormer", "ActionFormerSpec", "Detector", "DetectorOutput", "GTAD", "GTADOutput", "GTADSpec",
           "NMSConfig", "PyramidDetector",
           "PyramidHead",
           "TadTR", "TadTROutput", "TadTRSpec",
           "TriDet", "TriDetOutput", "TriDetSpec", "build_detector", "build_model", "model_name",
           "register_model", "registered_models", "seq_len_holding"]
