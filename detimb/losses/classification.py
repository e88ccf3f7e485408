"""Classification losses with the shape contract of detimb's heads.

Every loss subclasses ``ClassificationLoss``, which states its ``form`` (softmax over
background + K classes, or per-class sigmoid) and gives
``forward(logits, targets, weight=None, avg_factor=None, *, batch=None) -> scalar``, where
``weight`` is the sampler's per-candidate weight, ``avg_factor`` the objective's
normaliser and ``batch`` what the loss may know about the batch (``BatchClasses``), and
``candidate_loss(logits, targets) -> (N,)``, what samplers that rank by loss (OHEM) see.

Column layout. Softmax logits are (N, K + 1) with background in column 0 (torchvision).
Sigmoid logits in the RoI head are (N, K), column j for label j + 1, background all-zero
targets (detectron2's ``USE_SIGMOID_CE``), unless the loss keeps a background column
(``Columns``); RetinaNet keeps torchvision's (N, K + 1) with column 0 never positive. A
loss's ``roi_outputs`` and ``roi_scores`` say how many outputs the RoI predictor has and
how they become the K foreground scores at inference, as mmdetection's losses do
(``get_cls_channels``, ``get_activation``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import sigmoid_focal_loss

from detimb.losses.buffers import adopt_saved_shapes
from detimb.losses.reduce import weighted_sum
from detimb.losses.statistics import ClassStatistics
from detimb.registry import Registry

CLS_LOSSES = Registry("classification loss")


class Form(enum.Enum):
    """A classifier's output form: ``SOFTMAX`` over background + K classes, targets (N,)
    int64; ``SIGMOID`` per class, targets one-hot (N, C) or (N,) float in {0, 1}."""

    SOFTMAX = "softmax"
    SIGMOID = "sigmoid"


class Columns(enum.Enum):
    """The RoI head's sigmoid columns: ``FOREGROUND``, K columns (detectron2's sigmoid CE);
    ``WITH_BACKGROUND``, K + 1 with column 0 a background ("objectness") output whose
    target is 1 on background proposals (EQLv2's released code)."""

    FOREGROUND = "foreground"
    WITH_BACKGROUND = "with_background"


@dataclass(frozen=True)
class BatchClasses:
    """What the data says about the classes of a batch, for losses that choose classes.

    negative: (M,) int64 labels verified absent from at least one image of the batch (LVIS's
        ``neg_category_ids``).
    not_exhaustive: (N, K + 1) bool, per candidate and label, whether its image's labels of
        that class are incomplete (LVIS's ``not_exhaustive_category_ids``); column 0 unused.
    """

    negative: Tensor
    not_exhaustive: Tensor

    def select(self, index: Tensor) -> BatchClasses:
        """The same batch's classes for the candidates ``index``."""
        return BatchClasses(self.negative, self.not_exhaustive[index])


class ClassificationLoss(nn.Module):
    """Base of every classification (and pixel) loss.

    Subclasses set ``form`` and implement ``elementwise`` (the unreduced, unweighted loss:
    (N,) or (N, C)); ``uses_class_stats`` says the constructor takes the training set's
    ``class_stats`` (a ``ClassStatistics``; the builder passes it); ``applies_focal_factor``
    says the loss already has the focal factor (the focal sampler must not add it again);
    ``per_class`` says it weighs classes (the RPN's single objectness output refuses it);
    ``columns`` is the RoI head's sigmoid layout; ``reduces_per_level`` says the released
    code applies the loss once per pyramid level and sums the levels (the objective then
    calls it level by level where the head knows its levels). ``forward`` is
    ``loss_weight * sum(weight * elementwise) / avg_factor`` (``detimb.losses.reduce``).
    """

    form: ClassVar[Form]
    uses_class_stats: ClassVar[bool] = False
    applies_focal_factor: ClassVar[bool] = False
    per_class: ClassVar[bool] = False
    columns: ClassVar[Columns] = Columns.FOREGROUND
    reduces_per_level: ClassVar[bool] = False

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = loss_weight

    def elementwise(self, logits: Tensor, targets: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, logits: Tensor, targets: Tensor, weight: Tensor | None = None,
                avg_factor: float | Tensor | None = None, *, batch: BatchClasses | None = None) -> Tensor:
        return self.loss_weight * weighted_sum(self.elementwise(logits, targets), weight, avg_factor)

    def roi_outputs(self, num_classes: int) -> int:
        """The RoI predictor's number of class outputs for ``num_classes`` = K + 1."""
        if self.form is Form.SIGMOID and self.columns is Columns.FOREGROUND:
            return num_classes - 1
        return num_classes

    def roi_scores(self, logits: Tensor) -> Tensor:
        """(N, K) foreground scores at inference from the RoI predictor's logits: softmax
        without background; sigmoid; with a background column (``Columns.WITH_BACKGROUND``)
        ``sigmoid(x_j) * (1 - sigmoid(x_bg))``, as EQLv2's and ECM's released code."""
        if self.form is Form.SOFTMAX:
            return F.softmax(logits, -1)[:, 1:]
        p = torch.sigmoid(logits)
        if self.columns is Columns.WITH_BACKGROUND:
            return p[:, 1:] * (1 - p[:, :1])
        return p

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
    class's weight; the head's normaliser is unchanged. ``class_stats`` (the instances per
    foreground class) is supplied by the trainer. Defaults: loss_weight 1,
    class_weight null, beta 0.999, normalize 'classes'.
    """

    form = Form.SOFTMAX
    uses_class_stats = True

    def __init__(self, loss_weight: float = 1.0, class_weight: str | list[float] | None = None, beta: float = 0.999,
                 class_stats: ClassStatistics | None = None, normalize: str = "classes") -> None:
        super().__init__(loss_weight)
        self.class_weight = class_weight
        class_counts = None if class_stats is None else list(class_stats.instances)
        self.needs_counts = isinstance(class_weight, str) and class_counts is None
        if class_weight is None:
            self.register_buffer("weights", None)
        elif self.needs_counts:  # built without statistics (e.g. to load a checkpoint): weights come with it
            self.register_buffer("weights", torch.ones(1))
        else:
            self.register_buffer("weights", class_weights(class_weight, class_counts or [], beta, normalize))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        if prefix + "weights" in state_dict and self.weights is not None:
            adopt_saved_shapes(self, state_dict, prefix, ("weights",))
            self.needs_counts = False
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def elementwise(self, logits: Tensor, targets: Tensor) -> Tensor:
        if self.needs_counts:
            raise ValueError(f"class_weight '{self.class_weight}' needs the training set's class counts;"
                             " build the model with class_stats (the trainer does)")
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
