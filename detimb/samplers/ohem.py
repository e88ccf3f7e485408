"""Online hard example mining."""

from __future__ import annotations

import torch
from torch import Tensor

from detimb.samplers.base import SAMPLERS, Candidates, Normalization, Sampler, SamplerNeeds, check_num, pick_top, quota


@SAMPLERS.register("ohem")
class OHEMSampler(Sampler):
    """Online hard example mining (Shrivastava et al., CVPR 2016).

    The head's objective scores every candidate without gradient under the head's own
    configured losses (its classification loss, plus the positives' box loss when
    ``with_box_loss``), so OHEM mines by the objective it trains on; the sampler keeps the
    hardest. ``mode='quota'`` (mmdetection's OHEMSampler): the random
    sampler's quotas (``num``, ``pos_fraction``), filled with the highest-loss positives and
    negatives. ``mode='ratio'``: every positive, and the highest-loss negatives up to
    ``neg_pos_ratio`` per positive; an image without positives keeps ``min_neg``
    negatives. Every candidate counts once: when negatives are scarcer than the ratio all
    are used and positives are not counted twice (torchvision's SSD does count them twice,
    so the two agree whenever every image has at least ``neg_pos_ratio`` negatives per
    positive, as SSD's 8732 anchors always do). ``normalize_by``: 'kept' (the default) or
    'positives' (torchvision's SSD divides both terms by the batch's positives).
    Defaults: mode='quota', num=512, pos_fraction=0.25, neg_pos_ratio=3, min_neg=0,
    with_box_loss=False, normalize_by='kept'.
    """

    needs = SamplerNeeds(losses=True)

    def __init__(self, mode: str = "quota", num: int = 512, pos_fraction: float = 0.25, neg_pos_ratio: float = 3.0,
                 min_neg: int = 0, with_box_loss: bool = False, normalize_by: str = "kept") -> None:
        if mode not in ("quota", "ratio"):
            raise ValueError(f"mode must be 'quota' or 'ratio', got {mode!r}")
        if normalize_by not in ("kept", "positives"):
            raise ValueError(f"normalize_by must be 'kept' or 'positives', got {normalize_by!r}")
        self.normalization = Normalization.KEPT if normalize_by == "kept" else Normalization.POSITIVES
        check_num(num, pos_fraction)
        if neg_pos_ratio < 0 or min_neg < 0:
            raise ValueError("neg_pos_ratio and min_neg must be >= 0")
        self.mode, self.num, self.pos_fraction = mode, num, pos_fraction
        self.neg_pos_ratio, self.min_neg, self.with_box_loss = neg_pos_ratio, min_neg, with_box_loss
        self.needs = SamplerNeeds(losses=True, box_losses=with_box_loss)

    def __call__(self, candidates: list[Candidates]) -> list[Tensor]:
        out = []
        for c in candidates:
            if c.losses is None:
                raise ValueError("ohem needs Candidates.losses; the head must score candidates first")
            positive, negative = c.labels > 0, c.labels == 0
            if self.mode == "quota":
                num_pos, num_neg = quota(c.labels, self.num, self.pos_fraction)
                keep = pick_top(positive, c.losses, num_pos) | pick_top(negative, c.losses, num_neg)
            else:
                num_pos = int(positive.sum())
                limit = int(self.neg_pos_ratio * num_pos) if num_pos else self.min_neg
                keep = positive | pick_top(negative, c.losses, limit)
            out.append(keep.to(torch.float32))
        return out
