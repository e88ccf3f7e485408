"""Backbones, necks, heads and the builders that compose them around torchvision's detectors."""

from detimb.models.backbones import BACKBONES
from detimb.models.builder import DETECTORS, build_detector
from detimb.models.necks import NECKS

__all__ = ["BACKBONES", "DETECTORS", "NECKS", "build_detector"]
