"""Classification losses with the shape contract of detimb's heads.

``forward(logits, targets, weight=None, avg_factor=None) -> scalar``, where ``weight`` is
the sampler's per-candidate weight and ``avg_factor`` the head's normaliser.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import sigmoid_focal_loss

from detimb.losses.reduce import weighted_sum
from detimb.registry import Registry

CLS_LOSSES = Registry("classification loss")


def class_weights(kind: str | list[float], counts: list[int], beta: float) -> torch.Tensor:
    """Weights for background (index 0, weight 1) and the K foreground classes.

    'inverse_freq': proportional to 1 / n_c; 'effective_num' (Cui et al., CVPR 2019):
    proportional to (1 - beta) / (1 - beta^n_c). Both scaled to mean 1 over the foreground
    classes; a class absent from the training set counts as 1 instance. A list gives all
    K + 1 weights explicitly."""
    if not isinstance(kind, str):
        return torch.tensor([float(w) for w in kind])
    n = torch.tensor([max(1, int(c)) for c in counts], dtype=torch.float64)
    if kind == "inverse_freq":
        w = 1.0 / n
    elif kind == "effective_num":
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"effective_num needs 0 <= beta < 1, got {beta}")
        w = (1.0 - beta) / (1.0 - beta**n)
    else:
        raise ValueError(f"class_weight must be null, 'inverse_freq', 'effective_num' or a list, got {kind!r}")
    w = w * len(w) / w.sum()
    return torch.cat([torch.ones(1, dtype=torch.float64), w]).float()


@CLS_LOSSES.register("cross_entropy")
class CrossEntropyLoss(nn.Module):
    """Softmax cross-entropy (torchvision's Fast R-CNN classifier loss), optionally with
    class weights computed from the training set's instance counts (``class_weight``:
    null, 'inverse_freq', 'effective_num' with ``beta``, or a list of K + 1 weights).

    logits (N, C), targets (N,) int64 in [0, C). Each candidate's loss is multiplied by its
    class's weight; the head's normaliser is unchanged. ``class_counts`` (instances per
    foreground class, in label order) is supplied by the trainer. Defaults: loss_weight 1,
    class_weight null, beta 0.999.
    """

    form = "softmax"

    def __init__(self, loss_weight: float = 1.0, class_weight: str | list[float] | None = None, beta: float = 0.999,
                 class_counts: list[int] | None = None) -> None:
        super().__init__()
        self.loss_weight = loss_weight
        self.class_weight = class_weight
        self.needs_counts = isinstance(class_weight, str) and class_counts is None
        if class_weight is None:
            self.register_buffer("weights", None)
        elif self.needs_counts:  # built without statistics (e.g. to load a checkpoint): weights come with it
            self.register_buffer("weights", torch.ones(1))
        else:
            self.register_buffer("weights", class_weights(class_weight, class_counts or [], beta))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        if prefix + "weights" in state_dict and self.weights is not None:
            self.weights = torch.empty_like(state_dict[prefix + "weights"])
            self.needs_counts = False
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, logits: Tensor, targets: Tensor, weight: Tensor | None = None,
                avg_factor: float | Tensor | None = None) -> Tensor:
        if self.needs_counts:
            raise ValueError(f"class_weight '{self.class_weight}' needs the training set's class counts;"
                             " build the model with class_counts (the trainer does)")
        loss = F.cross_entropy(logits, targets, weight=self.weights, reduction="none")
        return self.loss_weight * weighted_sum(loss, weight, avg_factor)


@CLS_LOSSES.register("binary_cross_entropy")
class BinaryCrossEntropyLoss(nn.Module):
    """Sigmoid binary cross-entropy on logits (torchvision's RPN objectness loss).

    logits (N,) or (N, C), targets of the same shape in {0, 1}. Default loss_weight 1.0.
    """

    form = "sigmoid"

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

    form = "sigmoid"

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.alpha, self.gamma, self.loss_weight = alpha, gamma, loss_weight

    def forward(self, logits: Tensor, targets: Tensor, weight: Tensor | None = None,
                avg_factor: float | Tensor | None = None) -> Tensor:
        loss = sigmoid_focal_loss(logits, targets.to(logits.dtype), self.alpha, self.gamma, reduction="none")
        return self.loss_weight * weighted_sum(loss, weight, avg_factor)
