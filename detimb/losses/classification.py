"""Classification losses with the shape contract of detimb's heads.

``forward(logits, targets, weight=None, avg_factor=None) -> scalar``, where ``weight`` is
the sampler's per-candidate weight and ``avg_factor`` the head's normaliser.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import sigmoid_focal_loss

from detimb.losses.reduce import weighted_sum
from detimb.registry import Registry

CLS_LOSSES = Registry("classification loss")


@CLS_LOSSES.register("cross_entropy")
class CrossEntropyLoss(nn.Module):
    """Softmax cross-entropy (torchvision's Fast R-CNN classifier loss).

    logits (N, C), targets (N,) int64 in [0, C). Default loss_weight 1.0.
    """

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, logits: Tensor, targets: Tensor, weight: Tensor | None = None,
                avg_factor: float | Tensor | None = None) -> Tensor:
        loss = F.cross_entropy(logits, targets, reduction="none")
        return self.loss_weight * weighted_sum(loss, weight, avg_factor)


@CLS_LOSSES.register("binary_cross_entropy")
class BinaryCrossEntropyLoss(nn.Module):
    """Sigmoid binary cross-entropy on logits (torchvision's RPN objectness loss).

    logits (N,) or (N, C), targets of the same shape in {0, 1}. Default loss_weight 1.0.
    """

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, logits: Tensor, targets: Tensor, weight: Tensor | None = None,
                avg_factor: float | Tensor | None = None) -> Tensor:
        loss = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none")
        return self.loss_weight * weighted_sum(loss, weight, avg_factor)


@CLS_LOSSES.register("sigmoid_focal")
class SigmoidFocalLoss(nn.Module):
    """Sigmoid focal loss (Lin et al., ICCV 2017) via ``torchvision.ops.sigmoid_focal_loss``.

    ``FL = alpha_t * (1 - p_t)^gamma * BCE``; alpha < 0 disables alpha. Defaults alpha=0.25,
    gamma=2.0, loss_weight 1.0. logits (N, C), targets (N, C) one-hot float.
    """

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.alpha, self.gamma, self.loss_weight = alpha, gamma, loss_weight

    def forward(self, logits: Tensor, targets: Tensor, weight: Tensor | None = None,
                avg_factor: float | Tensor | None = None) -> Tensor:
        loss = sigmoid_focal_loss(logits, targets.to(logits.dtype), self.alpha, self.gamma, reduction="none")
        return self.loss_weight * weighted_sum(loss, weight, avg_factor)
