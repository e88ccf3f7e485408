"""Box regression losses on encoded deltas, with the shape contract of detimb's heads.

``forward(pred, target, weight=None, avg_factor=None) -> scalar``; pred/target (P, 4)
deltas of the positives, ``weight`` (P,) their sampler weights.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from detimb.losses.reduce import weighted_sum
from detimb.registry import Registry

BOX_LOSSES = Registry("box regression loss")


@BOX_LOSSES.register("smooth_l1")
class SmoothL1Loss(nn.Module):
    """Smooth L1 (Fast R-CNN, Girshick 2015): 0.5 x^2 / beta for |x| < beta, else |x| - 0.5 beta.

    Default beta=1/9 (torchvision's RPN and RoI head), loss_weight 1.0.
    """

    def __init__(self, beta: float = 1.0 / 9.0, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.beta, self.loss_weight = beta, loss_weight

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None,
                avg_factor: float | Tensor | None = None) -> Tensor:
        loss = F.smooth_l1_loss(pred, target, beta=self.beta, reduction="none")
        return self.loss_weight * weighted_sum(loss, weight, avg_factor)


@BOX_LOSSES.register("l1")
class L1Loss(nn.Module):
    """L1 on deltas (torchvision's RetinaNet default). Default loss_weight 1.0."""

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None,
                avg_factor: float | Tensor | None = None) -> Tensor:
        loss = F.l1_loss(pred, target, reduction="none")
        return self.loss_weight * weighted_sum(loss, weight, avg_factor)
