"""The sampler interface shared by detection heads and (later) dense prediction."""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor

from detimb.registry import Registry

SAMPLERS = Registry("sampler")


class Sampler(ABC):
    """Maps the candidates of each image to a weight per candidate.

    ``labels`` holds one (N_i,) int tensor per image: >= 1 foreground (the class, or 1 in
    the RPN), 0 background, -1 ignored. The result holds one (N_i,) float tensor per
    image on the same device: 0 drops a candidate, hard samplers give 0 or 1, soft
    samplers any non-negative real. Ignored candidates always get 0. Heads reduce their
    losses as ``sum(w * l) / normalizer``.
    """

    @abstractmethod
    def __call__(self, labels: list[Tensor]) -> list[Tensor]:
        ...
