"""Objective balancers: how a head's classification and regression terms are weighed."""

from __future__ import annotations

from torch import Tensor

from detimb.registry import Registry

BALANCERS = Registry("balancer")


@BALANCERS.register("fixed")
class FixedWeights:
    """Per-term multipliers, e.g. ``{loss_classifier: 1.0, loss_box_reg: 2.0}``; terms not
    named keep weight 1. Default: no change."""

    def __init__(self, weights: dict[str, float] | None = None) -> None:
        self.weights = dict(weights or {})

    def __call__(self, losses: dict[str, Tensor]) -> dict[str, Tensor]:
        unknown = set(self.weights) - set(losses)
        if unknown:
            raise KeyError(f"fixed balancer names terms {sorted(unknown)} the head does not produce;"
                           f" its terms are {sorted(losses)}")
        return {k: v * self.weights.get(k, 1.0) for k, v in losses.items()}
