"""Importance-based sample reweighting of positives (PISA's ISR-P)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from detimb.samplers.base import SAMPLERS, Candidates, ReweightContext, SamplerNeeds, SoftSampler, group_rank


@SAMPLERS.register("isr_p")
class ISRPSampler(SoftSampler):
    """ISR-P (Cao et al., Prime Sample Attention, CVPR 2020), as mmdetection's ``isr_p``.

    Candidates are first chosen by ``base`` (a hard sampler; default random 512 @ 0.25).
    Positives are then ranked by IoU-HLR: by the IoU of their *predicted* box with their
    ground truth within each ground truth (local rank r), then within each class by
    ``IoU + n_max - r`` (n_max: the most positives any class has). Rank h maps to
    ``u = (n_max - h) / n_max`` and the weight ``(bias + (1 - bias) * u)^k``; weights are
    rescaled so the weighted positive classification loss equals the unweighted one.
    Negatives keep weight 1. No gradient flows through the weights. Because the weights
    keep the positives' loss sum, both terms keep the base sampler's normaliser, the number
    kept (``Normalization.KEPT``; mmdetection's PISA heads divide by the kept samples too).
    Defaults: k=2, bias=0. Any head that has boxes supplies the predicted-box IoUs.
    """

    needs = SamplerNeeds(geometry=True)

    def __init__(self, k: float = 2.0, bias: float = 0.0, base: dict[str, Any] | None = None) -> None:
        if not 0.0 <= bias <= 1.0 or k < 0:
            raise ValueError(f"need 0 <= bias <= 1 and k >= 0, got bias={bias}, k={k}")
        self.base = SAMPLERS.build(dict(base or {"type": "random", "num": 512, "pos_fraction": 0.25}),
                                   "isr_p.base")
        if self.base.soft:
            raise ValueError("isr_p's base must be a hard sampler")
        self.k, self.bias = k, bias
        self.needs = replace(self.base.needs, geometry=True)

    def __call__(self, candidates: list[Candidates]) -> list[Tensor]:
        return self.base(candidates)

    @torch.no_grad()
    def reweight(self, logits: Tensor, targets: Tensor, labels: Tensor, context: ReweightContext) -> Tensor:
        weight = torch.ones(labels.shape, dtype=logits.dtype, device=logits.device)
        positive = torch.where(labels > 0)[0]
        if positive.numel() == 0:
            return weight
        classes = labels[positive]
        ious = context.pred_ious[positive].to(torch.float64)
        n_max = int(torch.bincount(classes).max())
        local = group_rank(context.gt_ids[positive], -ious)
        hlr = group_rank(classes, -(ious + n_max - local))
        u = (n_max - hlr).to(logits.dtype) / n_max
        w = (self.bias + (1 - self.bias) * u) ** self.k
        loss = context.loss
        loss = (loss.sum(dim=1) if loss.dim() > 1 else loss)[positive]
        weighted = (loss * w).sum()
        if weighted > 0:
            w = w * loss.sum() / weighted
        weight[positive] = w
        return weight
