"""Instance-balanced positives (Libra R-CNN's positive sampler)."""

from __future__ import annotations

import torch
from torch import Tensor

from detimb.samplers.base import (
    SAMPLERS, Candidates, Sampler, SamplerNeeds, check_num, pick_per_group, pick_random, quota,
)


def instance_balanced_positives(c: Candidates, num_pos: int) -> Tensor:
    """``num_pos`` positives with an equal share per ground truth, as mmdetection's
    InstanceBalancedPosSampler: at most ``round(num_pos / #gts) + 1`` per ground truth,
    drawn uniformly; a shortfall refilled at random from the other positives, an excess
    trimmed at random."""
    positive = c.labels > 0
    if int(positive.sum()) <= num_pos:
        return positive
    num_gts = int(c.gt_index[positive].unique().numel())
    per_gt = int(round(num_pos / num_gts) + 1)
    chosen = pick_per_group(positive, c.gt_index, per_gt)
    taken = int(chosen.sum())
    if taken < num_pos:
        chosen |= pick_random(positive & ~chosen, num_pos - taken)
    elif taken > num_pos:
        chosen = pick_random(chosen, num_pos)
    return chosen


@SAMPLERS.register("instance_balanced")
class InstanceBalancedSampler(Sampler):
    """Positives balanced across ground-truth instances (Pang et al., Libra R-CNN, CVPR 2019),
    negatives drawn uniformly; quotas as the random sampler's. Defaults: num=512,
    pos_fraction=0.25."""

    needs = SamplerNeeds(geometry=True)

    def __init__(self, num: int = 512, pos_fraction: float = 0.25) -> None:
        check_num(num, pos_fraction)
        self.num, self.pos_fraction = num, pos_fraction

    def __call__(self, candidates: list[Candidates]) -> list[Tensor]:
        out = []
        for c in candidates:
            num_pos, num_neg = quota(c.labels, self.num, self.pos_fraction)
            pos = instance_balanced_positives(c, num_pos)
            neg = pick_random(c.labels == 0, num_neg)
            out.append((pos | neg).to(torch.float32))
        return out
