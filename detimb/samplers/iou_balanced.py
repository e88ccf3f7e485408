"""IoU-balanced negative sampling (Libra R-CNN)."""

from __future__ import annotations

import torch
from torch import Tensor

from detimb.samplers.base import (
    SAMPLERS, Candidates, Sampler, SamplerNeeds, check_num, pick_per_group, pick_random, quota,
)
from detimb.samplers.instance_balanced import instance_balanced_positives


@SAMPLERS.register("iou_balanced")
class IoUBalancedSampler(Sampler):
    """IoU-balanced negatives (Pang et al., Libra R-CNN, CVPR 2019), as mmdetection's
    IoUBalancedNegSampler but vectorized and without changing its own settings per call.

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

    def negatives(self, c: Candidates, num_neg: int) -> Tensor:
        negative = c.labels == 0
        if int(negative.sum()) <= num_neg:
            return negative
        ious = c.ious
        if self.floor_thr > 0:
            floor = negative & (ious >= 0) & (ious < self.floor_thr)
            iou_set = negative & (ious >= self.floor_thr)
        elif self.floor_thr == 0:
            floor = negative & (ious == 0)
            iou_set = negative & (ious > 0)
        else:
            floor = torch.zeros_like(negative)
            iou_set = negative & (ious > self.floor_thr)
        want_iou = int(num_neg * (1 - self.floor_fraction))
        if int(iou_set.sum()) <= want_iou:
            chosen = iou_set
        elif self.num_bins < 2:
            chosen = pick_random(iou_set, want_iou)
        else:
            lo = max(self.floor_thr, 0.0)
            width = (float(ious.max()) - lo) / self.num_bins
            bins = ((ious - lo) / width).floor().long() if width > 0 else torch.zeros_like(c.labels)
            in_range = iou_set & (bins >= 0) & (bins < self.num_bins)
            chosen = pick_per_group(in_range, bins.clamp(min=0), want_iou // self.num_bins)
            chosen |= pick_random(iou_set & ~chosen, want_iou - int(chosen.sum()))
        chosen |= pick_random(floor, num_neg - int(chosen.sum()))
        chosen |= pick_random(negative & ~chosen, num_neg - int(chosen.sum()))
        return chosen

    def __call__(self, candidates: list[Candidates]) -> list[Tensor]:
        out = []
        for c in candidates:
            num_pos, num_neg = quota(c.labels, self.num, self.pos_fraction)
            pos = instance_balanced_positives(c, num_pos) if self.pos == "instance_balanced" else pick_random(
                c.labels > 0, num_pos)
            out.append((pos | self.negatives(c, num_neg)).to(torch.float32))
        return out
