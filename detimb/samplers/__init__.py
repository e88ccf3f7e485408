"""Candidate samplers: candidates in, one weight per candidate out (0/1 hard, real soft)."""

from detimb.samplers.base import SAMPLERS, Sampler
from detimb.samplers.random import RandomSampler

__all__ = ["SAMPLERS", "RandomSampler", "Sampler"]
