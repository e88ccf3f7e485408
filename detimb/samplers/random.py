"""Random positive/negative sampling (torchvision's), and the keep-everything sampler."""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler

from detimb.samplers.base import SAMPLERS, Candidates, Normalization, Sampler, check_num, pick_random, quota


@SAMPLERS.register("random")
class RandomSampler(Sampler):
    """Uniformly drawn positives and negatives per image (Faster R-CNN, Ren et al. 2015).

    ``num_pos = min(#pos, int(num * pos_fraction))``, ``num_neg = min(#neg, num - num_pos)``.
    Without ``neg_pos_ub`` torchvision's sampler draws them, so results (and random number
    use) equal torchvision's. ``neg_pos_ub`` (mmdetection's) caps negatives at
    ``neg_pos_ub * max(1, num_pos)``. Defaults: num=512, pos_fraction=0.25, no cap (the RoI
    head's; the RPN's are 256 and 0.5, set in its config slot).
    """

    def __init__(self, num: int = 512, pos_fraction: float = 0.25, neg_pos_ub: float | None = None) -> None:
        check_num(num, pos_fraction)
        if neg_pos_ub is not None and neg_pos_ub < 0:
            raise ValueError(f"neg_pos_ub must be >= 0, got {neg_pos_ub}")
        self.num, self.pos_fraction, self.neg_pos_ub = num, pos_fraction, neg_pos_ub
        self._torchvision = BalancedPositiveNegativeSampler(num, pos_fraction)

    def __call__(self, candidates: list[Candidates]) -> list[Tensor]:
        labels = [c.labels for c in candidates]
        if self.neg_pos_ub is None:
            pos, neg = self._torchvision(labels)
            return [(p | n).to(torch.float32) for p, n in zip(pos, neg)]
        out = []
        for lab in labels:
            num_pos, num_neg = quota(lab, self.num, self.pos_fraction)
            num_neg = min(num_neg, int(self.neg_pos_ub * max(1, num_pos)))
            out.append((pick_random(lab > 0, num_pos) | pick_random(lab == 0, num_neg)).to(torch.float32))
        return out


@SAMPLERS.register("all")
class AllSampler(Sampler):
    """Every non-ignored candidate with weight 1 (mmdetection's PseudoSampler): what
    one-stage detectors such as RetinaNet use, the focal loss doing the balancing. Both
    terms are divided by the number of positives (``Normalization.POSITIVES``), as
    torchvision's RetinaNet does and as the sampling-free authors' code divides its box
    terms (``ChenJoya/sampling-free``): divided by every candidate they would vanish."""

    normalization = Normalization.POSITIVES

    def __call__(self, candidates: list[Candidates]) -> list[Tensor]:
        return [(c.labels >= 0).to(torch.float32) for c in candidates]
