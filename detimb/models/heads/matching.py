"""Matching candidates to ground truth: the one helper every box head uses."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.models.detection._utils import Matcher
from torchvision.ops import box_iou


@dataclass
class Matches:
    """One image's candidates matched to its ground truth.

    labels: (N,) int64, the matched ground truth's class (>= 1) for foreground, 0 for
        background (below the low threshold, or an image without ground truth), -1 for
        candidates between the thresholds (ignored).
    ious: (N,) float, each candidate's best IoU with the image's ground truth (0 without any).
    gt_index: (N,) int64, the index of the matched ground truth (0 where there is none).
    """

    labels: Tensor
    ious: Tensor
    gt_index: Tensor


def match_to_ground_truth(matcher: Matcher, candidates: Tensor, gt_boxes: Tensor, gt_labels: Tensor) -> Matches:
    """torchvision's matching (``box_iou`` then its ``Matcher``, as the RPN, the RoI heads
    and RetinaNet each do): candidates (N, 4) xyxy, gt_boxes (G, 4), gt_labels (G,) int64
    (all ones for the RPN's objectness)."""
    n, device = candidates.shape[0], candidates.device
    if gt_boxes.numel() == 0:
        zeros = torch.zeros(n, dtype=torch.int64, device=device)
        return Matches(zeros, torch.zeros(n, dtype=candidates.dtype, device=device), zeros.clone())
    quality = box_iou(gt_boxes, candidates)
    matched = matcher(quality)
    index = matched.clamp(min=0)
    labels = gt_labels[index].to(torch.int64)
    labels[matched == matcher.BELOW_LOW_THRESHOLD] = 0
    labels[matched == matcher.BETWEEN_THRESHOLDS] = -1
    return Matches(labels, quality.max(dim=0).values, index)


def matches_from_indices(matched: Tensor, anchors: Tensor, gt_boxes: Tensor, gt_labels: Tensor) -> Matches:
    """A torchvision head's own per-anchor ground-truth index (FCOS's centre sampling,
    SSD's matcher: -1 background, nothing ignored) as ``Matches``."""
    if gt_boxes.numel() == 0:
        zeros = torch.zeros(len(matched), dtype=torch.int64, device=matched.device)
        return Matches(zeros, torch.zeros(len(matched), dtype=anchors.dtype, device=matched.device), zeros.clone())
    index = matched.clamp(min=0)
    labels = torch.where(matched >= 0, gt_labels[index].to(torch.int64), torch.zeros_like(index))
    return Matches(labels, box_iou(gt_boxes, anchors).max(dim=0).values, index)
