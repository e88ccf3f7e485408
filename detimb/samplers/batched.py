"""Batched draws for quota samplers: every image of a batch at once, without host syncs.

Candidates of the B images are padded into (B, N) rows (``CandidateBatch``). A draw of
``k_i`` uniformly random members of a set in row i ("take") walks the row in a random order
and keeps the members whose running count is at most ``k_i``: two gathers and one
cumulative sum per draw, with ``k`` a (B,) tensor, so no count is read back to the
host. The random orders are per-row ``randperm`` s (``RandomOrders``): two independent
ones per call serve every stage of a sampler, because a stage's draw stays uniform when
its order is independent of what decided its pool (see ``IoUBalancedSampler``), and the
relative orders of disjoint sets under one permutation are independent.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from detimb.samplers.base import Candidates


@dataclass(frozen=True)
class CandidateBatch:
    """The candidates of B images, padded to N. labels: (B, N) int64, padding -1 (ignored);
    ious: (B, N) float, padding 0; gt_index: (B, N) int64, padding 0; lengths: each image's
    candidate count (from shapes: no sync)."""

    labels: Tensor
    ious: Tensor
    gt_index: Tensor
    lengths: tuple[int, ...]

    @classmethod
    def of(cls, candidates: list[Candidates]) -> CandidateBatch:
        return cls(pad_sequence([c.labels for c in candidates], batch_first=True, padding_value=-1),
                   pad_sequence([c.ious for c in candidates], batch_first=True, padding_value=0.0),
                   pad_sequence([c.gt_index for c in candidates], batch_first=True, padding_value=0),
                   tuple(len(c.labels) for c in candidates))

    def split(self, chosen: Tensor) -> list[Tensor]:
        """(B, N) bool -> one (N_i,) float32 0/1 tensor per image."""
        weights = chosen.to(torch.float32)
        return [weights[i, :n] for i, n in enumerate(self.lengths)]


class RandomOrder:
    """A uniformly random order of each row's positions: ``steps`` (B, N) int64, the
    positions in walking order (a row shorter than N walks its padding last), and
    ``at_step`` (B, N), each position's step (the inverse)."""

    def __init__(self, lengths: tuple[int, ...], width: int, device: torch.device) -> None:
        tail = torch.arange(width, device=device)
        self.steps = torch.stack([torch.cat([torch.randperm(n, device=device), tail[n:]]) for n in lengths])
        self.at_step = torch.empty_like(self.steps).scatter_(1, self.steps, tail.expand_as(self.steps))

    def running_count(self, members: Tensor) -> Tensor:
        """(B, N) int64: for each position, how many members of its row come at or before it."""
        return members.gather(1, self.steps).cumsum(1).gather(1, self.at_step)


class RandomOrders:
    """Two independent random orders per row (``first``, ``second``)."""

    def __init__(self, lengths: tuple[int, ...], width: int, device: torch.device) -> None:
        self.first = RandomOrder(lengths, width, device)
        self.second = RandomOrder(lengths, width, device)


def take(members: Tensor, k: Tensor, order: RandomOrder) -> Tensor:
    """(B, N) bool: ``min(k_i, #members_i)`` members of each row, uniformly at random (the
    first ``k_i`` in ``order``); ``k``: (B,) int, values <= 0 take none."""
    return members & (order.running_count(members) <= k.unsqueeze(1))


def take_per_group(members: Tensor, groups: Tensor, num_groups: int, k: Tensor, order: RandomOrder) -> Tensor:
    """(B, N) bool: at most ``k_i`` members of each group of row i, uniformly at random;
    ``groups``: (B, N) int64, members' in [0, num_groups) (a few: one draw each)."""
    chosen = torch.zeros_like(members)
    for group in range(num_groups):
        chosen |= take(members & (groups == group), k, order)
    return chosen


def count(mask: Tensor) -> Tensor:
    """(B,) int64: members per row."""
    return mask.sum(1)


def quotas(labels: Tensor, num: int, pos_fraction: float) -> tuple[Tensor, Tensor]:
    """torchvision's quota per row, as (B,) tensors: ``num_pos = min(#pos, int(num * f))``,
    ``num_neg = min(#neg, num - num_pos)``."""
    num_pos = count(labels > 0).clamp(max=int(num * pos_fraction))
    return num_pos, torch.minimum(count(labels == 0), num - num_pos)


def instance_balanced(batch: CandidateBatch, num_pos: Tensor, orders: RandomOrders) -> Tensor:
    """(B, N) bool: mmdetection's InstanceBalancedPosSampler per row: all positives when they
    fit; else at most ``round(num_pos / #gts) + 1`` per ground truth, a shortfall refilled
    and an excess trimmed at random. The ground truths are ranked on the positives alone
    (a few hundred), after the call's one host sync (their count)."""
    positive = batch.labels > 0
    rows, cols = positive.nonzero(as_tuple=True)  # the one host sync
    chosen = torch.zeros_like(positive)
    if rows.numel():
        gts = batch.gt_index[rows, cols]
        by_order = torch.argsort(orders.first.at_step[rows, cols])
        by_gt = by_order[torch.argsort(gts[by_order], stable=True)]
        ranked = by_gt[torch.argsort(rows[by_gt], stable=True)]  # by (row, gt), then random order
        first = torch.ones(ranked.numel(), dtype=torch.bool, device=rows.device)
        first[1:] = (rows[ranked][1:] != rows[ranked][:-1]) | (gts[ranked][1:] != gts[ranked][:-1])
        position = torch.arange(ranked.numel(), device=rows.device)
        rank = position - torch.cummax(torch.where(first, position, torch.zeros_like(position)), 0).values
        num_gts = torch.zeros_like(num_pos).scatter_add_(0, rows[ranked], first.long())
        per_gt = torch.round(num_pos.double() / num_gts.clamp(min=1)).long() + 1
        keep = torch.zeros_like(rows, dtype=torch.bool)
        keep[ranked] = rank < per_gt[rows[ranked]]
        chosen.index_put_((rows, cols), keep)
    chosen |= take(positive & ~chosen, num_pos - count(chosen), orders.second)
    chosen = take(chosen, num_pos, orders.second)
    return torch.where((count(positive) <= num_pos).unsqueeze(1), positive, chosen)
