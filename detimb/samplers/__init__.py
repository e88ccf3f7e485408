"""Candidate samplers: candidates in, one weight per candidate out (0/1 hard, real soft)."""

from detimb.samplers.base import (
    SAMPLERS, Candidates, Normalization, ReweightContext, Sampler, SamplerNeeds, SoftSampler,
)
from detimb.samplers.focal import FocalSampler
from detimb.samplers.instance_balanced import InstanceBalancedSampler
from detimb.samplers.iou_balanced import IoUBalancedSampler
from detimb.samplers.isr_p import ISRPSampler
from detimb.samplers.ohem import OHEMSampler
from detimb.samplers.pixels import ClassBalancedPixelSampler, OHEMPixelSampler, RandomPixelSampler
from detimb.samplers.random import AllSampler, RandomSampler
from detimb.samplers.score_hlr import ScoreHLRSampler

__all__ = [
    "SAMPLERS", "AllSampler", "Candidates", "ClassBalancedPixelSampler", "FocalSampler", "ISRPSampler",
    "Normalization", "ReweightContext", "SamplerNeeds",
    "InstanceBalancedSampler", "IoUBalancedSampler", "OHEMPixelSampler", "OHEMSampler", "RandomPixelSampler",
    "RandomSampler", "Sampler", "ScoreHLRSampler", "SoftSampler",
]
