"""The one reduction every detimb loss uses: ``loss_weight * sum(w * l) / avg_factor``."""

from __future__ import annotations

from torch import Tensor


def weighted_sum(loss: Tensor, weight: Tensor | None, avg_factor: float | Tensor | None) -> Tensor:
    """``loss`` (N, ...) per element; ``weight`` (N,) per candidate or shaped like ``loss``; ``avg_factor`` the
    normaliser the head chooses (the number of sampled candidates, of positives, ...);
    None means the number of candidates. An empty input gives a zero that keeps the graph."""
    if weight is not None:
        # (N,) weights apply to every element of a candidate; (N, C) weights element-wise
        loss = loss * (weight if weight.dim() == loss.dim() else weight.reshape(-1, *([1] * (loss.dim() - 1))))
    total = loss.sum()
    if avg_factor is None:
        avg_factor = max(loss.shape[0], 1) if loss.dim() else 1
    return total / avg_factor
