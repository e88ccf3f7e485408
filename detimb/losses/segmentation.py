"""Per-candidate class losses for dense prediction (and any softmax head).

Shape contract (segmentation_models.pytorch style, the one ``cross_entropy`` already has):
``forward(logits (N, C), targets (N,) int64 in [0, C), weight (N,) | None, avg_factor) -> scalar``.
A dense head flattens its kept pixels into the N candidates; class 0 is background. For
the asymmetric losses ``rare_classes`` are label indices (the builder translates category
ids or names from the config).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from detimb.losses.classification import CLS_LOSSES, BatchClasses, ClassificationLoss, Form


def _rare_mask(targets: Tensor, rare: Tensor) -> Tensor:
    """(N,) bool: the true class of the candidate is rare."""
    return torch.isin(targets, rare) if rare.numel() else torch.zeros_like(targets, dtype=torch.bool)


class _RareClasses(ClassificationLoss):
    form = Form.SOFTMAX

    def __init__(self, rare_classes: list[int] | None, loss_weight: float) -> None:
        super().__init__(loss_weight)
        if any(int(c) < 1 for c in rare_classes or []):
            raise ValueError(f"rare_classes are foreground labels (>= 1), got {rare_classes}")
        self.register_buffer("rare", torch.tensor([int(c) for c in rare_classes or []], dtype=torch.int64),
                             persistent=False)


@CLS_LOSSES.register("focal")
class FocalLoss(ClassificationLoss):
    """Softmax focal loss (Lin et al., ICCV 2017) for multi-class candidates:
    ``FL = -alpha_t (1 - p_t)^gamma log p_t`` with ``p_t`` the softmax probability of the
    true class; ``alpha_t`` is alpha for foreground and 1 - alpha for background, alpha
    None disables it. Defaults: gamma=2.0, alpha=None, loss_weight=1.0."""

    form = Form.SOFTMAX
    applies_focal_factor = True

    def __init__(self, gamma: float = 2.0, alpha: float | None = None, loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight)
        if gamma < 0 or (alpha is not None and not 0.0 <= alpha <= 1.0):
            raise ValueError(f"need gamma >= 0 and alpha in [0, 1] or null, got gamma={gamma}, alpha={alpha}")
        self.gamma, self.alpha = gamma, alpha

    def elementwise(self, logits: Tensor, targets: Tensor) -> Tensor:
        log_p = F.log_softmax(logits, dim=-1).gather(1, targets[:, None]).squeeze(1)
        loss = -((1 - log_p.exp()) ** self.gamma) * log_p
        if self.alpha is not None:
            loss = loss * torch.where(targets > 0, self.alpha, 1 - self.alpha)
        return loss


@CLS_LOSSES.register("dice")
class DiceLoss(ClassificationLoss):
    """Soft Dice loss (Milletari et al., V-Net, 3DV 2016), one term per class.

    With p the softmax probabilities and y the one-hot targets, summed over the batch's
    candidates (each multiplied by its sampler weight): ``dice_c = (2 sum p_c y_c + smooth)
    / (sum p_c + sum y_c + smooth)`` and the loss is the mean of ``1 - dice_c`` over the
    classes present in the targets (as segmentation_models.pytorch masks absent classes),
    weighted by ``class_weight`` (C values) when given. ``include_background`` False leaves
    class 0 out. ``avg_factor`` is ignored: Dice is a ratio. Defaults: smooth=0, eps=1e-7,
    include_background=True, class_weight=None, loss_weight=1.0.

    Dice is a ratio over the batch and has no per-candidate value, so samplers that rank by
    loss see each candidate's cross-entropy (``candidate_loss``): the pixel term that
    mmsegmentation's hard pixel mining ranks by.
    """

    form = Form.SOFTMAX

    def __init__(self, smooth: float = 0.0, eps: float = 1e-7, include_background: bool = True,
                 class_weight: list[float] | None = None, loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight)
        self.smooth, self.eps, self.include_background = smooth, eps, include_background
        self.register_buffer("class_weight", None if class_weight is None else torch.tensor(class_weight).float(),
                             persistent=False)

    def forward(self, logits: Tensor, targets: Tensor, weight: Tensor | None = None,
                avg_factor: float | Tensor | None = None, *, batch: BatchClasses | None = None) -> Tensor:
        num_classes = logits.shape[1]
        probs = logits.softmax(dim=-1)
        onehot = F.one_hot(targets, num_classes).to(probs.dtype)
        if weight is not None:
            probs, onehot = probs * weight[:, None], onehot * weight[:, None]
        intersection = (probs * onehot).sum(0)
        cardinality = probs.sum(0) + onehot.sum(0)
        dice = (2 * intersection + self.smooth) / (cardinality + self.smooth).clamp(min=self.eps)
        present = onehot.sum(0) > 0
        if not self.include_background:
            present[0] = False
        w = present.to(probs.dtype)
        if self.class_weight is not None:
            if self.class_weight.numel() != num_classes:
                raise ValueError(f"dice class_weight has {self.class_weight.numel()} values for {num_classes} classes")
            w = w * self.class_weight
        if w.sum() == 0:
            return logits.sum() * 0.0
        return self.loss_weight * ((1 - dice) * w).sum() / w.sum()

    def candidate_loss(self, logits: Tensor, targets: Tensor) -> Tensor:
        return self.loss_weight * F.cross_entropy(logits, targets, reduction="none")


@CLS_LOSSES.register("asymmetric_large_margin")
class AsymmetricLargeMarginLoss(_RareClasses):
    """Asymmetric large-margin loss (Li, Kamnitsas, Glocker, TMI 2021): the margin ``m`` is
    subtracted from the true-class logit only where the true class is rare
    (``rare_classes``), then softmax cross-entropy; other candidates get plain CE. The
    rare classes must then win by a margin, countering the logit shift that overfitting
    on few examples causes. Defaults: margin=1.0, rare_classes=[] (plain CE), loss_weight=1.0.
    """

    def __init__(self, margin: float = 1.0, rare_classes: list[int] | None = None, loss_weight: float = 1.0) -> None:
        super().__init__(rare_classes, loss_weight)
        if margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        self.margin = margin

    def elementwise(self, logits: Tensor, targets: Tensor) -> Tensor:
        shift = F.one_hot(targets, logits.shape[1]).to(logits.dtype) * self.margin
        shift = shift * _rare_mask(targets, self.rare)[:, None].to(logits.dtype)
        return F.cross_entropy(logits - shift, targets, reduction="none")


@CLS_LOSSES.register("asymmetric_focal")
class AsymmetricFocalLoss(_RareClasses):
    """Asymmetric focal loss (Li, Kamnitsas, Glocker, TMI 2021): the focal factor
    ``(1 - p_t)^gamma`` applies only where the true class is not rare, so frequent classes'
    easy candidates are suppressed while rare classes keep the plain cross-entropy (the
    focal loss would also shrink the rare classes' loss as they start to overfit).
    Defaults: gamma=2.0, rare_classes=[] (plain focal), loss_weight=1.0."""

    applies_focal_factor = True

    def __init__(self, gamma: float = 2.0, rare_classes: list[int] | None = None, loss_weight: float = 1.0) -> None:
        super().__init__(rare_classes, loss_weight)
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        self.gamma = gamma

    def elementwise(self, logits: Tensor, targets: Tensor) -> Tensor:
        log_p = F.log_softmax(logits, dim=-1).gather(1, targets[:, None]).squeeze(1)
        factor = torch.where(_rare_mask(targets, self.rare), torch.ones_like(log_p), (1 - log_p.exp()) ** self.gamma)
        return -factor * log_p


def binary_as_two_class(logits: Tensor) -> Tensor:
    """(N,) sigmoid logits x as (N, 2) softmax logits [0, x]: softmax gives (1 - sigmoid(x),
    sigmoid(x)), so a softmax loss on them is the matching binary loss (CE == BCE)."""
    return torch.stack([torch.zeros_like(logits), logits], dim=-1)
