"""Classification losses with the shape contract of detimb's heads.

Every loss subclasses ``ClassificationLoss``, which states its ``form`` (softmax over
background + K classes, or per-class sigmoid) and gives
``forward(logits, targets, weight=None, avg_factor=None) -> scalar``, where ``weight`` is
the sampler's per-candidate weight and ``avg_factor`` the objective's normaliser, and
``candidate_loss(logits, targets) -> (N,)``, what samplers that rank by loss (OHEM) see.
"""

from __future__ import annotations

import enum
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import sigmoid_focal_loss

from detimb.losses.reduce import weighted_sum
from detimb.registry import Registry

CLS_LOSSES = Registry("classification loss")


class Form(enum.Enum):
    """A classifier's output form: ``SOFTMAX`` over background + K classes, targets (N,)
    int64; ``SIGMOID`` per class, targets one-hot (N, C) or (N,) float in {0, 1}."""

    SOFTMAX = "softmax"
    SIGMOID = "sigmoid"


class ClassificationLoss(nn.Module):
    """Base of every classification (and pixel) loss.

    Subclasses set ``form`` and implement ``elementwise`` (the unreduced, unweighted loss:
    (N,) or (N, C)); ``uses_class_counts`` says the constructor takes the training set's
    ``class_counts`` (the builder passes them); ``applies_focal_factor`` says the loss
    already has the focal factor (the focal sampler must not add it again). ``forward`` is
    ``loss_weight * sum(weight * elementwise) / avg_factor`` (``detimb.losses.reduce``).
    """

    form: ClassVar[Form]
    uses_class_counts: ClassVar[bool] = False
    applies_focal_factor: ClassVar[bool] = False

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = loss_weight

    def elementwise(self, logits: Tensor, targets: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, logits: Tensor, targets: Tensor, weight: Tensor | None = None,
                avg_factor: float | Tensor | None = None) -> Tensor:
        return self.loss_weight * weighted_sum(self.elementwise(logits, targets), weight, avg_factor)

    def candidate_loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        """(N,) each candidate's loss (summed over classes for sigmoid losses), with
        ``loss_weight``: what a sampler that ranks by loss sees."""
        loss = self.elementwise(logits, targets)
        return self.loss_weight * (loss.sum(dim=tuple(range(1, loss.dim()))) if loss.dim() > 1 else loss)


NORMALIZATIONS = ("instances", "classes", "frequent")


def class_weights(kind: str | list[float], counts: list[int], beta: float, normalize: str = "classes"
                  ) -> torch.Tensor:
    """Weights for background (index 0, weight 1) and the K foreground classes.

    'inverse_freq': proportional to 1 / n_c; 'effective_num' (Cui et al., CVPR 2019):
    proportional to (1 - beta) / (1 - beta^n_c). A class absent from the training set counts
    as 1 instance. ``normalize`` fixes their scale against background (weight 1):
    'classes' (the default), mean 1 over the K classes, the convention of Cui et al.'s
    released code; 'instances', the average foreground instance at weight 1
    (``sum_c n_c w_c = sum_c n_c``); 'frequent', the most frequent class at weight 1, so no
    class weighs less than background. With 'classes' the head classes fall far below
    background (counts 1200..6, beta 0.999: 0.038), which looks like the cause of the APf
    cost; measured at 2500 iterations on two datasets, neither other convention removes
    that cost (``benchmarks/README.md``), so the released code's stays the default.
    A list gives all K + 1 weights explicitly."""
    if not isinstance(kind, str):
        return torch.tensor([float(w) for w in kind])
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, got {normalize!r}")
    n = torch.tensor([max(1, int(c)) for c in counts], dtype=torch.float64)
    if kind == "inverse_freq":
        w = 1.0 / n
    elif kind == "effective_num":
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"effective_num needs 0 <= beta < 1, got {beta}")
        w = (1.0 - beta) / (1.0 - beta**n)
    else:
        raise ValueError(f"class_weight must be null, 'inverse_freq', 'effective_num' or a list, got {kind!r}")
    if normalize == "instances":
        w = w * n.sum() / (n * w).sum()
    elif normalize == "classes":
        w = w * len(w) / w.sum()
    else:
        w = w / w[n.argmax()]
    return torch.cat([torch.ones(1, dtype=torch.float64), w]).float()


@CLS_LOSSES.register("cross_entropy")
class CrossEntropyLoss(ClassificationLoss):
    """Softmax cross-entropy (torchvision's Fast R-CNN classifier loss), optionally with
    class weights computed from the training set's instance counts (``class_weight``:
    null, 'inverse_freq', 'effective_num' with ``beta``, or a list of K + 1 weights), scaled
    as ``normalize`` says (see ``class_weights``: 'classes' by default, as Cui et al.'s
    code; 'instances'; 'frequent').

    logits (N, C), targets (N,) int64 in [0, C). Each candidate's loss is multiplied by its
    class's weight; the head's normaliser is unchanged. ``class_counts`` (instances per
    foreground class, in label order) is supplied by the trainer. Defaults: loss_weight 1,
    class_weight null, beta 0.999, normalize 'classes'.
    """

    form = Form.SOFTMAX
    uses_class_counts = True

    def __init__(self, loss_weight: float = 1.0, class_weight: str | list[float] | None = None, beta: float = 0.999,
                 class_counts: list[int] | None = None, normalize: str = "classes") -> None:
        super().__init__(loss_weight)
        self.class_weight = class_weight
        self.needs_counts = isinstance(class_weight, str) and class_counts is None
        if class_weight is None:
            self.register_buffer("weights", None)
        elif self.needs_counts:  # built without statistics (e.g. to load a checkpoint): weights come with it
            self.register_buffer("weights", torch.ones(1))
        else:
            self.register_buffer("weights", class_weights(class_weight, class_counts or [], beta, normalize))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        if prefix + "weights" in state_dict and self.weights is not None:
            self.weights = torch.empty_like(state_dict[prefix + "weights"])
            self.needs_counts = False
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def elementwise(self, logits: Tensor, targets: Tensor) -> Tensor:
        if self.needs_counts:
            raise ValueError(f"class_weight '{self.class_weight}' needs the training set's class counts;"
                             " build the model with class_counts (the trainer does)")
        return F.cross_entropy(logits, targets, weight=self.weights, reduction="none")


@CLS_LOSSES.register("binary_cross_entropy")
class BinaryCrossEntropyLoss(ClassificationLoss):
    """Sigmoid binary cross-entropy on logits (torchvision's RPN objectness loss).

    logits (N,) or (N, C), targets of the same shape in {0, 1}. Default loss_weight 1.0.
    """

    form = Form.SIGMOID

    def elementwise(self, logits: Tensor, targets: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none")


@CLS_LOSSES.register("sigmoid_focal")
class SigmoidFocalLoss(ClassificationLoss):
    """Sigmoid focal loss (Lin et al., ICCV 2017) via ``torchvision.ops.sigmoid_focal_loss``.

    ``FL = alpha_t * (1 - p_t)^gamma * BCE``; alpha < 0 disables alpha. Defaults alpha=0.25,
    gamma=2.0, loss_weight 1.0. logits (N, C), targets (N, C) one-hot float.
    """

    form = Form.SIGMOID
    applies_focal_factor = True

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight)
        self.alpha, self.gamma = alpha, gamma

    def elementwise(self, logits: Tensor, targets: Tensor) -> Tensor:
        return sigmoid_focal_loss(logits, targets.to(logits.dtype), self.alpha, self.gamma, reduction="none")
