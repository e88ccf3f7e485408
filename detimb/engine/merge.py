"""Merging overlapping predictions of neighbouring tiles: NMS or greedy NMM, by IoU or IoS.

IoU: intersection over union (torchvision's ``box_iou``). IoS: intersection over the
smaller box's area, which matches a box cut by a tile border with the whole box seen in
the next tile. Greedy non-maximum merging (NMM, as SAHI's ``greedy_nmm`` and its
``GreedyNMMPostprocess``) goes down the boxes by score; each kept box takes the
lower-scored boxes that match it, and merges them in descending score one at a time, each
only if it still matches the box merged so far (which grows), becoming their union (its
score and label stay); a taken box that no longer matches is dropped. NMS drops them all.
Class-aware matching only pairs boxes of the same label.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import batched_nms, box_area, box_iou

MERGES = ("nms", "greedy_nmm")
MATCHES = ("iou", "ios")


def box_ios(a: Tensor, b: Tensor) -> Tensor:
    """(N, M) intersection over the smaller of each pair's areas."""
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=2)
    smaller = torch.min(box_area(a)[:, None], box_area(b)[None, :])
    return inter / smaller.clamp(min=1e-9)


def pair_metric(a: Tensor, b: Tensor, match: str) -> float:
    """IoU or IoS of two boxes (4,)."""
    return float((box_iou if match == "iou" else box_ios)(a[None], b[None])[0, 0])


def match_matrix(boxes: Tensor, labels: Tensor, match: str, class_agnostic: bool) -> Tensor:
    m = box_iou(boxes, boxes) if match == "iou" else box_ios(boxes, boxes)
    if not class_agnostic:
        m = torch.where(labels[:, None] == labels[None, :], m, torch.zeros_like(m))
    return m


def merge_predictions(boxes: Tensor, scores: Tensor, labels: Tensor, method: str = "greedy_nmm",
                      match: str = "ios", threshold: float = 0.5, class_agnostic: bool = False
                      ) -> tuple[Tensor, Tensor, Tensor]:
    """boxes (N, 4) xyxy, scores (N,), labels (N,) -> the merged (boxes, scores, labels),
    highest score first. A pair matches when its IoU/IoS exceeds ``threshold``."""
    if method not in MERGES or match not in MATCHES:
        raise ValueError(f"method must be one of {MERGES} and match one of {MATCHES}, got {method!r}, {match!r}")
    if boxes.numel() == 0:
        return boxes.reshape(0, 4), scores, labels
    if method == "nms" and match == "iou":
        keep = batched_nms(boxes, scores, torch.zeros_like(labels) if class_agnostic else labels, threshold)
        return boxes[keep], scores[keep], labels[keep]
    order = torch.argsort(scores, descending=True, stable=True)
    boxes, scores, labels = boxes[order], scores[order], labels[order]
    matches = match_matrix(boxes, labels, match, class_agnostic) > threshold
    taken = torch.zeros(len(boxes), dtype=torch.bool)
    kept, merged = [], []
    for i in range(len(boxes)):
        if taken[i]:
            continue
        group = torch.nonzero(matches[i] & ~taken).flatten()
        group = group[group > i]
        taken[i] = True
        taken[group] = True
        box = boxes[i]
        if method == "greedy_nmm":
            for j in group.tolist():  # in descending score, re-checked against the growing box (SAHI's)
                if pair_metric(box, boxes[j], match) > threshold:
                    box = torch.cat([torch.minimum(box[:2], boxes[j, :2]), torch.maximum(box[2:], boxes[j, 2:])])
        kept.append(i)
        merged.append(box)
    idx = torch.tensor(kept, dtype=torch.long)
    return torch.stack(merged), scores[idx], labels[idx]
