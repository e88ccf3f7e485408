"""IoU-balanced negative sampling (Libra R-CNN)."""

from __future__ import annotations

import torch
from torch import Tensor

from detimb.samplers.base import SAMPLERS, Candidates, Sampler, SamplerNeeds, check_num
from detimb.samplers.batched import (
    CandidateBatch, RandomOrders, count, instance_balanced, quotas, take, take_per_group,
)


@SAMPLERS.register("iou_balanced")
class IoUBalancedSampler(Sampler):
    """IoU-balanced negatives (Pang et al., Libra R-CNN, CVPR 2019), as mmdetection's
    IoUBalancedNegSampler (``mmdet/core/bbox/samplers/iou_balanced_neg_sampler.py``), but
    batched over the images (``detimb.samplers.batched``) and without changing its own
    settings per call (mmdetection sets ``floor_thr`` to 0 inside its first call).

    If the negatives fit their quota all are taken. Otherwise they split into a floor set
    (IoU < ``floor_thr``; with ``floor_thr`` 0, IoU == 0; with a negative ``floor_thr``, no
    floor set) and an IoU set. ``int(quota * (1 - floor_fraction))`` come from the IoU set:
    it is cut into ``num_bins`` equal bins over [lo, max IoU of all candidates), lo =
    max(floor_thr, 0); each bin gives ``that // num_bins`` at random (all of a smaller bin),
    and the shortfall is refilled at random from the rest of the IoU set. The floor set
    then fills the remaining quota, and any still missing come from all negatives.
    Positives are instance-balanced (``pos: instance_balanced``) or uniform (``random``).
    Defaults (Libra's): num=512, pos_fraction=0.25, num_bins=3, floor_thr=-1,
    floor_fraction=0, pos='instance_balanced'.

    Every draw is uniform, as mmdetection's ``random_choice``: the bins walk the first random
    order, the refill the second (independent of which members the bins kept); the floor set
    is disjoint from the IoU set and walks the first; the last refill, from all negatives,
    can only meet IoU-set leftovers (IoUs are >= 0, so every negative is in one of the two
    sets, and it runs only once the floor set is used up), and continues the second order.
    One host sync per call with instance-balanced positives (their count), none with random.
    """

    needs = SamplerNeeds(geometry=True)

    def __init__(self, num: int = 512, pos_fraction: float = 0.25, num_bins: int = 3, floor_thr: float = -1.0,
                 floor_fraction: float = 0.0, pos: str = "instance_balanced") -> None:
        check_num(num, pos_fraction)
        if num_bins < 1 or not 0.0 <= floor_fraction <= 1.0:
            raise ValueError(f"need num_bins >= 1 and 0 <= floor_fraction <= 1, got {num_bins}, {floor_fraction}")
        if pos not in ("instance_balanced", "random"):
            raise ValueError(f"pos must be 'instance_balanced' or 'random', got {pos!r}")
        self.num, self.pos_fraction, self.num_bins = num, pos_fraction, num_bins
        self.floor_thr, self.floor_fraction, self.pos = floor_thr, floor_fraction, pos

    def _sets(self, negative: Tensor, ious: Tensor) -> tuple[Tensor, Tensor]:
        """(floor set, IoU set) among the negatives."""
        if self.floor_thr > 0:
            return negative & (ious >= 0) & (ious < self.floor_thr), negative & (ious >= self.floor_thr)
        if self.floor_thr == 0:
            return negative & (ious == 0), negative & (ious > 0)
        return torch.zeros_like(negative), negative & (ious > self.floor_thr)

    def _iou_part(self, iou_set: Tensor, ious: Tensor, want: Tensor, orders: RandomOrders) -> Tensor:
        """``want`` per row from the IoU set: per bin, then refilled (all of a set that fits)."""
        if self.num_bins < 2:
            balanced = take(iou_set, want, orders.first)
        else:
            lo = max(self.floor_thr, 0.0)
            width = ((ious.amax(1) - lo) / self.num_bins).unsqueeze(1)
            bins = torch.where(width > 0, torch.floor((ious - lo) / torch.where(width > 0, width, 1.0)), 0.0).long()
            in_range = iou_set & (bins >= 0) & (bins < self.num_bins)
            balanced = take_per_group(in_range, bins, self.num_bins, want // self.num_bins, orders.first)
            balanced |= take(iou_set & ~balanced, want - count(balanced), orders.second)
        return torch.where((count(iou_set) <= want).unsqueeze(1), iou_set, balanced)

    def negatives(self, batch: CandidateBatch, num_neg: Tensor, orders: RandomOrders) -> Tensor:
        """(B, N) bool: each row's ``num_neg`` negatives."""
        negative = batch.labels == 0
        floor, iou_set = self._sets(negative, batch.ious)
        want = torch.floor(num_neg.double() * (1 - self.floor_fraction)).long()
        chosen = self._iou_part(iou_set, batch.ious, want, orders)
        chosen |= take(floor, num_neg - count(chosen), orders.first)
        chosen |= take(negative & ~chosen, num_neg - count(chosen), orders.second)
        return torch.where((count(negative) <= num_neg).unsqueeze(1), negative, chosen)

    def __call__(self, candidates: list[Candidates]) -> list[Tensor]:
        if not candidates:
            return []
        batch = CandidateBatch.of(candidates)
        if batch.labels.numel() == 0:  # no images, or none with a candidate
            return batch.split(batch.labels > 0)
        orders = RandomOrders(batch.lengths, batch.labels.shape[1], batch.labels.device)
        num_pos, num_neg = quotas(batch.labels, self.num, self.pos_fraction)
        positives = (instance_balanced(batch, num_pos, orders) if self.pos == "instance_balanced"
                     else take(batch.labels > 0, num_pos, orders.first))
        return batch.split(positives | self.negatives(batch, num_neg, orders))
