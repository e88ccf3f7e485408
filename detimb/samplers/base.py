"""The sampler interface shared by detection heads and dense prediction.

A sampler turns the candidates of each image (anchors, proposals, pixels) into one
weight per candidate. Hard samplers give 0 or 1; soft samplers any non-negative real,
computed from the current predictions. A head's objective (``detimb.models.heads.
objective``) then reduces its losses as ``sum(w * l) / normalizer``, the normaliser
chosen by the sampler's ``normalization``, the same rule in every head:

- ``Normalization.KEPT``: both terms are divided by the number of kept candidates
  (torchvision's Faster R-CNN with its random sampler; OHEM; Libra's samplers; ISR-P,
  whose weights keep the positives' loss sum so its base sampler's normaliser holds).
- ``Normalization.POSITIVES``: both terms are divided by the number of positives, at
  least 1 (RetinaNet: the focal loss, and ``all`` candidates without sampling).

Everything runs on the candidates' device, vectorized.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from detimb.registry import Registry

SAMPLERS = Registry("sampler")


@dataclass
class Candidates:
    """One image's candidates, as a head's objective hands them to its sampler.

    labels: (N,) int64, >= 1 foreground (the class; 1 in the RPN), 0 background, -1 ignored.
    ious: (N,) float, IoU with the best-matching ground truth (0 when the image has none).
    gt_index: (N,) int64, index of that ground truth in the image (meaningful where labels > 0).
    losses: (N,) float, the current loss of each candidate without gradient, under the
        head's configured losses; filled only for samplers whose ``needs.losses``.
    scores: (N, K) float, the current foreground scores (the RoI head's inference scores);
        filled only for samplers whose ``needs.predictions``.
    pred_boxes: (N, 4) float xyxy, each candidate's predicted box for its highest-scoring
        class; filled with ``scores``.
    """

    labels: Tensor
    ious: Tensor
    gt_index: Tensor
    losses: Tensor | None = None
    scores: Tensor | None = None
    pred_boxes: Tensor | None = None


@dataclass(frozen=True)
class SamplerNeeds:
    """What a sampler needs from the head, in one typed field.

    losses: ``Candidates.losses`` filled with each candidate's classification loss.
    box_losses: the positives' box loss added to ``Candidates.losses`` (OHEM's
        ``with_box_loss``); implies ``losses``.
    geometry: box IoUs or ground-truth instances (``Candidates.ious``/``gt_index``), which
        pixels of a dense head do not have.
    predictions: ``Candidates.scores`` and ``pred_boxes``, which only the RoI head gives
        (per-class scores and boxes of proposals).
    """

    losses: bool = False
    box_losses: bool = False
    geometry: bool = False
    predictions: bool = False


class Normalization(enum.Enum):
    """What a sampler's objective divides both loss terms by (see the module docstring)."""

    KEPT = "kept"
    POSITIVES = "positives"


@dataclass(frozen=True)
class ReweightContext:
    """What a soft sampler may read besides logits and targets, for the N kept candidates.

    gt_ids: (N,) int64 ground-truth ids unique across the batch (meaningful where labels > 0).
    pred_ious: (N,) float IoU of each positive's predicted box with its ground truth (0
        elsewhere, and everywhere in heads without boxes).
    loss: (N,) the per-candidate classification loss under the head's loss, without gradient.
    """

    gt_ids: Tensor
    pred_ious: Tensor
    loss: Tensor


class Sampler(ABC):
    """Hard sampler: ``__call__`` returns one (N_i,) float 0/1 tensor per image.

    Ignored candidates always get 0. ``needs`` says what the head must supply;
    ``normalization`` which normaliser its objective uses; ``classifier_prior``, when set,
    is the foreground probability the head's classifier bias starts from (soft samplers
    that weigh every candidate need it, or the first iterations drown in easy
    negatives).
    """

    needs: ClassVar[SamplerNeeds] = SamplerNeeds()
    normalization: ClassVar[Normalization] = Normalization.KEPT
    soft: ClassVar[bool] = False
    classifier_prior: float | None = None

    @abstractmethod
    def __call__(self, candidates: list[Candidates]) -> list[Tensor]:
        ...


class SoftSampler(Sampler):
    """Soft sampler: keeps every non-ignored candidate (or those of a base sampler), then
    ``reweight`` returns real weights from the predictions, which multiply the kept
    candidates' weights (keeping their graph where the sampler says so, as the focal loss
    does)."""

    soft = True

    def __call__(self, candidates: list[Candidates]) -> list[Tensor]:
        return [(c.labels >= 0).to(torch.float32) for c in candidates]

    @abstractmethod
    def reweight(self, logits: Tensor, targets: Tensor, labels: Tensor, context: ReweightContext) -> Tensor:
        """Weights for the kept candidates' loss elements.

        logits: (N, C) class scores (softmax heads) or (N, C)/(N,) logits (sigmoid heads).
        targets: what the head's classification loss takes: (N,) int64 classes for softmax,
            one-hot (N, C) or (N,) float for sigmoid. labels: (N,) int64 as in Candidates.
        Returns a tensor broadcastable to the element-wise loss: (N,) or (N, C).
        """


def pick_random(mask: Tensor, k: int | Tensor) -> Tensor:
    """A bool mask of ``min(k, mask.sum())`` entries of ``mask`` drawn uniformly."""
    keys = torch.rand(mask.shape, device=mask.device)
    keys = torch.where(mask, keys, torch.full_like(keys, 2.0))
    k = int(min(int(k), int(mask.sum())))
    out = torch.zeros_like(mask)
    if k > 0:
        out[keys.topk(k, largest=False).indices] = True
    return out


def group_rank(groups: Tensor, keys: Tensor) -> Tensor:
    """The rank (0, 1, ...) of each entry among the entries of its group, by ascending
    ``keys``; ``groups`` are integer ids >= 0. Vectorized: one sort, no loop over groups."""
    if groups.numel() == 0:
        return groups.clone()
    k = keys.double()
    k = (k - k.min()) / (k.max() - k.min() + 1.0)  # in [0, 1): the group id dominates the sort
    order = torch.argsort(groups.double() * 2.0 + k, stable=True)
    sorted_groups = groups[order]
    position = torch.arange(len(order), device=groups.device)
    first = torch.ones_like(sorted_groups, dtype=torch.bool)
    first[1:] = sorted_groups[1:] != sorted_groups[:-1]
    starts = torch.cummax(torch.where(first, position, torch.zeros_like(position)), 0).values
    rank = torch.empty_like(position)
    rank[order] = position - starts
    return rank


def pick_per_group(mask: Tensor, groups: Tensor, cap: int | Tensor, scores: Tensor | None = None) -> Tensor:
    """Within ``mask``, keep at most ``cap`` entries of each group (integer ids >= 0): the
    highest ``scores`` or, without scores, a uniform draw."""
    out = torch.zeros_like(mask)
    idx = torch.where(mask)[0]
    if idx.numel() == 0 or int(cap) <= 0:
        return out
    keys = torch.rand(idx.numel(), device=mask.device) if scores is None else -scores[idx]
    out[idx[group_rank(groups[idx], keys) < int(cap)]] = True
    return out


def pick_top(mask: Tensor, scores: Tensor, k: int | Tensor) -> Tensor:
    """A bool mask of the ``min(k, mask.sum())`` entries of ``mask`` with the highest scores."""
    k = int(min(int(k), int(mask.sum())))
    out = torch.zeros_like(mask)
    if k > 0:
        masked = torch.where(mask, scores, torch.full_like(scores, float("-inf")))
        out[masked.topk(k).indices] = True
    return out


def quota(labels: Tensor, num: int, pos_fraction: float) -> tuple[int, int]:
    """torchvision's quota: ``num_pos = min(#pos, int(num * f))``, ``num_neg = min(#neg, num - num_pos)``."""
    num_pos = min(int((labels > 0).sum()), int(num * pos_fraction))
    num_neg = min(int((labels == 0).sum()), num - num_pos)
    return num_pos, num_neg


def check_num(num: int, pos_fraction: float) -> None:
    if num <= 0 or not 0.0 < pos_fraction <= 1.0:
        raise ValueError(f"need num > 0 and 0 < pos_fraction <= 1, got num={num}, pos_fraction={pos_fraction}")
