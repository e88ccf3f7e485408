"""Merging overlapping predictions of neighbouring tiles: NMS or greedy NMM, by IoU or IoS.

IoU: intersection over union (torchvision's ``box_iou``). IoS: intersection over the
smaller box's area, which matches a box cut by a tile border with the whole box seen in
the next tile. Greedy non-maximum merging (NMM, as SAHI's ``greedy_nmm`` and its
``GreedyNMMPostprocess``) goes down the boxes by score; each kept box takes the
lower-scored boxes that match it, and merges them in descending score one at a time, each
only if it still matches the box merged so far (which grows), becoming their union (its
score and label stay); a taken box that no longer matches is dropped. NMS drops them all.
Class-aware matching only pairs boxes of the same label.

A pair can match only if the boxes intersect (both metrics are 0 otherwise and thresholds
are >= 0), so ``merge_predictions`` finds the pairs with a uniform grid: each box is
entered in the cells it covers, and only boxes that share a cell are compared. Time and
memory grow with the number of boxes and of close pairs, not with N^2; the result equals
the exhaustive N x N merge (``merge_predictions_exhaustive``, kept as the reference the
tests and ``benchmarks/sliced_inference.py`` compare against), pair metrics being
computed with the same float32 operations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import batched_nms, box_area, box_iou

MERGES = ("nms", "greedy_nmm")
PAIR_CHUNK = 1 << 18  # within-cell pair entries expanded at a time by ``candidate_pairs``
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


def _check(method: str, match: str, threshold: float) -> None:
    if method not in MERGES or match not in MATCHES:
        raise ValueError(f"method must be one of {MERGES} and match one of {MATCHES}, got {method!r}, {match!r}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"the merge threshold must be in [0, 1], got {threshold}")


def paired_metric(a: Tensor, b: Tensor, match: str) -> Tensor:
    """(P,) IoU or IoS of aligned boxes a[k], b[k], by the operations ``box_iou`` / ``box_ios``
    perform on each entry of their matrices (so the values are the same floats)."""
    lt = torch.max(a[:, :2], b[:, :2])
    rb = torch.min(a[:, 2:], b[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    if match == "iou":
        return inter / (box_area(a) + box_area(b) - inter)
    return inter / torch.min(box_area(a), box_area(b)).clamp(min=1e-9)


def candidate_pairs(boxes: np.ndarray) -> np.ndarray:
    """(P, 2) int64 pairs i < j of boxes (N, 4) that share a cell of a uniform grid whose
    cells are as large as the median box's larger side: every intersecting pair among them.
    Memory is linear in N (intermediates are freed as soon as they are used)."""
    n = len(boxes)
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    cell = max(float(np.median(sides)) if n else 1.0, 1e-6)
    lo = np.floor(boxes[:, :2] / cell).astype(np.int64)
    hi = np.maximum(np.floor(boxes[:, 2:] / cell).astype(np.int64), lo)  # a degenerate box covers its first cell
    shift = lo.min(axis=0)  # cells counted from the scene's first occupied one
    lo, hi = lo - shift, hi - shift
    span = hi - lo + 1
    counts = span[:, 0] * span[:, 1]
    width = int(hi[:, 0].max()) + 2
    owner = np.repeat(np.arange(n), counts)  # one entry per (box, covered cell)
    k = np.arange(len(owner))
    k -= np.repeat(np.cumsum(counts) - counts, counts)  # the entry's rank among its box's cells
    across = span[owner, 0]
    key = (lo[owner, 1] + k // across) * width + lo[owner, 0] + k % across  # the cell, row-major
    del k, across
    order = np.argsort(key, kind="stable")
    key, owner = key[order], owner[order]
    del order
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    del key
    sizes = np.diff(np.r_[starts, len(owner)])
    # every ordered pair within a cell, a run of cells at a time: the expansion holds
    # sizes^2 entries per cell, so a bounded run keeps memory flat when many boxes pile up
    # (a detector's overlapping boxes on each object)
    spent = np.cumsum(sizes.astype(np.int64) ** 2)
    cuts = np.unique(np.r_[0, np.searchsorted(spent, np.arange(PAIR_CHUNK, spent[-1], PAIR_CHUNK)) + 1, len(sizes)])
    found = []
    for c0, c1 in zip(cuts[:-1], cuts[1:]):
        cell_starts, cell_sizes = starts[c0:c1], sizes[c0:c1]
        rep = np.repeat(cell_sizes, cell_sizes)  # entry e of a cell, once per entry of that cell
        a = np.repeat(np.arange(cell_starts[0], cell_starts[-1] + cell_sizes[-1]), rep)
        b = np.arange(len(a)) - np.repeat(np.cumsum(rep) - rep, rep)  # its partner's rank in the cell
        b += np.repeat(np.repeat(cell_starts, cell_sizes), rep)
        i, j = owner[a], owner[b]
        keep = i < j
        found.append(np.unique(i[keep] * n + j[keep]))
    pairs = np.unique(np.concatenate(found))
    del found
    return np.stack([pairs // n, pairs % n], axis=1)


@dataclass(frozen=True)
class Merged:
    """What a merge kept: ``boxes`` (M, 4) xyxy (a greedy-NMM box is the union of its
    members), ``scores`` (M,), ``labels`` (M,), highest score first, and each kept box's
    members: the indices into the input of the boxes it holds (the kept box first, then the
    boxes merged into it in merge order; NMS: the kept box alone), kept box m's being
    ``member_index[member_ptr[m]:member_ptr[m + 1]]`` (two flat arrays, not M small ones:
    a scene has 10^5 and more). The masks of a merged box are the union of its members'
    (SAHI ORs them)."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    member_index: np.ndarray
    member_ptr: np.ndarray

    def members(self, m: int) -> np.ndarray:
        """The input indices of the boxes kept box ``m`` holds."""
        return self.member_index[self.member_ptr[m]:self.member_ptr[m + 1]]


def merge_predictions(boxes: Tensor, scores: Tensor, labels: Tensor, method: str = "greedy_nmm",
                      match: str = "ios", threshold: float = 0.5, class_agnostic: bool = False
                      ) -> tuple[Tensor, Tensor, Tensor]:
    """boxes (N, 4) xyxy, scores (N,), labels (N,) -> the merged (boxes, scores, labels),
    highest score first (``merge_groups`` without the members)."""
    merged = merge_groups(boxes, scores, labels, method, match, threshold, class_agnostic)
    return merged.boxes, merged.scores, merged.labels


def merge_groups(boxes: Tensor, scores: Tensor, labels: Tensor, method: str = "greedy_nmm", match: str = "ios",
                 threshold: float = 0.5, class_agnostic: bool = False) -> Merged:
    """The merge of boxes (N, 4) xyxy, scores (N,), labels (N,) with the members of each kept
    box. A pair matches when its IoU/IoS exceeds ``threshold``. Pairs are found on a grid
    (see the module docstring); the result equals the exhaustive merge."""
    _check(method, match, threshold)
    if boxes.numel() == 0:
        return Merged(boxes.reshape(0, 4), scores, labels, np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64))
    if not bool(torch.isfinite(boxes).all()):
        raise ValueError("merge_predictions: boxes hold NaN or infinite coordinates")
    if method == "nms" and match == "iou":
        keep = batched_nms(boxes, scores, torch.zeros_like(labels) if class_agnostic else labels, threshold)
        return Merged(boxes[keep], scores[keep], labels[keep], keep.numpy(), np.arange(len(keep) + 1))
    order = torch.argsort(scores, descending=True, stable=True)
    boxes, scores, labels = boxes[order], scores[order], labels[order]
    pairs = torch.from_numpy(candidate_pairs(boxes.double().numpy()))
    i, j = pairs[:, 0], pairs[:, 1]
    ok = paired_metric(boxes[i], boxes[j], match) > threshold
    if not class_agnostic:
        ok &= labels[i] == labels[j]
    i, j = i[ok].numpy(), j[ok].numpy()  # i < j: j scores lower (or equal, later)
    order_j = np.lexsort((j, i))
    i, j = i[order_j], j[order_j]
    indptr = np.searchsorted(i, np.arange(len(boxes) + 1))
    taken = np.zeros(len(boxes), dtype=bool)
    kept: list[int] = []
    member_index: list[int] = []
    member_ptr = [0]
    grown = boxes.clone()  # row k: kept box k merged with its members
    for k in range(len(boxes)):
        if taken[k]:
            continue
        group = j[indptr[k]:indptr[k + 1]]
        group = group[~taken[group]]
        taken[k] = True
        taken[group] = True
        member_index.append(k)
        if method == "greedy_nmm" and len(group):
            box = boxes[k]
            for g in group.tolist():  # in descending score, re-checked against the growing box (SAHI's)
                if pair_metric(box, boxes[g], match) > threshold:
                    box = torch.cat([torch.minimum(box[:2], boxes[g, :2]), torch.maximum(box[2:], boxes[g, 2:])])
                    member_index.append(g)
            grown[k] = box
        member_ptr.append(len(member_index))
        kept.append(k)
    idx = torch.tensor(kept, dtype=torch.long)
    return Merged(grown[idx], scores[idx], labels[idx], order.numpy()[np.array(member_index, dtype=np.int64)],
                  np.array(member_ptr, dtype=np.int64))


def merge_predictions_exhaustive(boxes: Tensor, scores: Tensor, labels: Tensor, method: str = "greedy_nmm",
                                 match: str = "ios", threshold: float = 0.5, class_agnostic: bool = False
                                 ) -> tuple[Tensor, Tensor, Tensor]:
    """The reference merge over the full N x N match matrix (memory N^2): what
    ``merge_predictions`` equals."""
    _check(method, match, threshold)
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
