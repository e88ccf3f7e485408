"""Random positive/negative sampling, as torchvision's BalancedPositiveNegativeSampler."""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler

from detimb.samplers.base import SAMPLERS, Sampler


@SAMPLERS.register("random")
class RandomSampler(Sampler):
    """Uniformly drawn positives and negatives per image (Faster R-CNN, Ren et al. 2015).

    ``num_pos = min(#pos, int(num * pos_fraction))``, ``num_neg = min(#neg, num - num_pos)``;
    torchvision's sampler draws them, so results (and random number use) equal
    torchvision's. Defaults: num=512, pos_fraction=0.25 (the RoI head's; the RPN's are
    256 and 0.5, set in its config slot).
    """

    def __init__(self, num: int = 512, pos_fraction: float = 0.25) -> None:
        if num <= 0 or not 0.0 < pos_fraction <= 1.0:
            raise ValueError(f"need num > 0 and 0 < pos_fraction <= 1, got num={num}, pos_fraction={pos_fraction}")
        self.num = num
        self.pos_fraction = pos_fraction
        self._sampler = BalancedPositiveNegativeSampler(num, pos_fraction)

    def __call__(self, labels: list[Tensor]) -> list[Tensor]:
        pos, neg = self._sampler(labels)
        return [(p | n).to(torch.float32) for p, n in zip(pos, neg)]
