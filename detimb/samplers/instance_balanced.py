"""Instance-balanced positives (Libra R-CNN's positive sampler)."""

from __future__ import annotations

from torch import Tensor

from detimb.samplers.base import SAMPLERS, Candidates, Sampler, SamplerNeeds, check_num
from detimb.samplers.batched import CandidateBatch, RandomOrders, instance_balanced, quotas, take


@SAMPLERS.register("instance_balanced")
class InstanceBalancedSampler(Sampler):
    """Positives balanced across ground-truth instances (Pang et al., Libra R-CNN, CVPR 2019;
    mmdetection's InstanceBalancedPosSampler, ``detimb.samplers.batched.instance_balanced``),
    negatives drawn uniformly; quotas as the random sampler's. Defaults: num=512,
    pos_fraction=0.25. Batched over the images, one host sync per call."""

    needs = SamplerNeeds(geometry=True)

    def __init__(self, num: int = 512, pos_fraction: float = 0.25) -> None:
        check_num(num, pos_fraction)
        self.num, self.pos_fraction = num, pos_fraction

    def __call__(self, candidates: list[Candidates]) -> list[Tensor]:
        if not candidates:
            return []
        batch = CandidateBatch.of(candidates)
        orders = RandomOrders(batch.lengths, batch.labels.shape[1], batch.labels.device)
        num_pos, num_neg = quotas(batch.labels, self.num, self.pos_fraction)
        negatives = take(batch.labels == 0, num_neg, orders.first)  # disjoint from the positives' draws
        return batch.split(instance_balanced(batch, num_pos, orders) | negatives)
