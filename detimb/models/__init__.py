"""Backbones, necks, heads and the builders that compose them around torchvision's detectors
and a dense-prediction (semantic segmentation) model."""

from detimb.models.backbones import BACKBONES
from detimb.models.builder import DETECTORS, SEGMENTORS, build_detector, build_model
from detimb.models.necks import NECKS

__all__ = ["BACKBONES", "DETECTORS", "NECKS", "SEGMENTORS", "build_detector", "build_model"]
