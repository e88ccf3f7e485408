"""Importance-based sample reweighting of negatives (PISA's ISR-N, Score-HLR)."""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_iou, nms

from detimb.samplers.base import (
    SAMPLERS, Candidates, Sampler, SamplerNeeds, check_num, group_rank, pick_random, quota,
)


def nms_groups(boxes: Tensor, scores: Tensor, iou_thr: float) -> Tensor:
    """(N,) int64 the group of each box under mmcv's ``nms_match``: boxes are visited in
    descending score; each box not yet suppressed heads a group and suppresses every later
    box that overlaps it by IoU >= ``iou_thr`` (mmcv's ``nms_match_cpu`` compares with >=,
    in float32; torchvision's ``nms`` suppresses at > only). Each suppressed box joins the
    first group head, in score order, that overlaps it. Group ids are the heads' indices."""
    boxes = boxes.float()
    threshold = torch.tensor(iou_thr, dtype=torch.float32)
    # IoU >= t in float32 is IoU > the float32 just below t, which torchvision's nms applies.
    below = float(torch.nextafter(threshold, torch.tensor(-float("inf"))))
    keep = nms(boxes, scores, below)  # descending score
    order = torch.argsort(scores, descending=True, stable=True)
    position = torch.empty_like(order)
    position[order] = torch.arange(len(order), device=order.device)
    overlaps = (box_iou(boxes[keep], boxes) >= threshold.to(boxes.device)) \
        & (position[keep][:, None] <= position[None, :])
    groups = keep[overlaps.to(torch.uint8).argmax(0)]  # the first head (in score order) that overlaps
    groups[keep] = keep
    return groups


@SAMPLERS.register("score_hlr")
class ScoreHLRSampler(Sampler):
    """ISR-N (Cao et al., Prime Sample Attention, CVPR 2020), as mmdetection's
    ``score_hlr_sampler.py``: positives are drawn at random (``num``, ``pos_fraction``,
    ``neg_pos_ub`` as the random sampler's); negatives are ranked by Score-HLR and weighted.

    Each negative's score ``s`` is its highest foreground score. Negatives with
    ``s > score_thr`` are valid; they are grouped by NMS-match at ``iou_thr`` on their
    predicted boxes (for that class); within a group rank r by score, and the importance
    ``num_valid - r + s`` orders them all (h). The top ones are kept, and if there are too
    few the rest are drawn at random from the invalid ones. Kept negatives weigh
    ``(bias + (1 - bias) (m - h) / m)^k`` with ``m = max(num_expected, num_valid)`` (the
    random ones take the smallest HLR weight), rescaled so their weighted classification
    loss equals the unweighted one. Positives weigh 1. Without a valid negative the
    negatives are random at weight 1. RoI head only (it needs per-class scores and boxes).
    With ``isr_p`` over it (``base: {type: score_hlr}``) this is PISA as published.
    Defaults: num=512, pos_fraction=0.25, k=0.5, bias=0, score_thr=0.05, iou_thr=0.5.
    """

    needs = SamplerNeeds(losses=True, geometry=True, predictions=True)

    def __init__(self, num: int = 512, pos_fraction: float = 0.25, neg_pos_ub: float | None = None, k: float = 0.5,
                 bias: float = 0.0, score_thr: float = 0.05, iou_thr: float = 0.5) -> None:
        check_num(num, pos_fraction)
        if not 0.0 <= bias <= 1.0 or k < 0 or not 0.0 <= iou_thr <= 1.0:
            raise ValueError(f"need 0 <= bias <= 1, k >= 0 and 0 <= iou_thr <= 1, got bias={bias}, k={k},"
                             f" iou_thr={iou_thr}")
        if neg_pos_ub is not None and neg_pos_ub < 0:
            raise ValueError(f"neg_pos_ub must be >= 0, got {neg_pos_ub}")
        self.num, self.pos_fraction, self.neg_pos_ub = num, pos_fraction, neg_pos_ub
        self.k, self.bias, self.score_thr, self.iou_thr = k, bias, score_thr, iou_thr

    def __call__(self, candidates: list[Candidates]) -> list[Tensor]:
        return [self._one(c) for c in candidates]

    def _one(self, c: Candidates) -> Tensor:
        assert c.scores is not None and c.pred_boxes is not None and c.losses is not None
        num_pos, _ = quota(c.labels, self.num, self.pos_fraction)
        weight = pick_random(c.labels > 0, num_pos).to(torch.float32)
        num_expected = self.num - int(weight.sum())
        if self.neg_pos_ub is not None:
            num_expected = min(num_expected, int(self.neg_pos_ub * max(1, int(weight.sum()))))
        negative = torch.where(c.labels == 0)[0]
        num_expected = min(num_expected, len(negative))
        if num_expected <= 0:
            return weight
        score = c.scores[negative].max(1).values
        valid = torch.where(score > self.score_thr)[0]
        if valid.numel() == 0:
            weight[negative[pick_random(torch.ones_like(negative, dtype=torch.bool), num_expected)]] = 1.0
            return weight
        groups = nms_groups(c.pred_boxes[negative[valid]].float(), score[valid].float(), self.iou_thr)
        importance = len(valid) - group_rank(groups, -score[valid].double()).double() + score[valid].double()
        order = torch.argsort(importance, descending=True, stable=True)
        num_hlr = min(len(valid), num_expected)
        hlr = order[:num_hlr]
        rank = torch.arange(num_hlr, dtype=torch.float64, device=score.device)
        bound = max(num_expected, len(valid))
        w = (bound - rank) / bound
        chosen = valid[hlr]
        if num_expected > num_hlr:  # top up with random invalid negatives at the smallest HLR weight
            invalid = torch.ones(len(negative), dtype=torch.bool, device=score.device)
            invalid[valid] = False
            extra = torch.where(pick_random(invalid, num_expected - num_hlr))[0]
            chosen = torch.cat([chosen, extra])
            w = torch.cat([w, w.min().expand(len(extra))])
        w = (self.bias + (1 - self.bias) * w).pow(self.k)
        loss = c.losses[negative[chosen]].double()
        weighted = (loss * w).sum()
        if weighted > 0:
            w = w * loss.sum() / weighted
        weight[negative[chosen]] = w.to(weight.dtype)
        return weight
