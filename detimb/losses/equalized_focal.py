"""Equalized focal loss (Li et al., "Equalized Focal Loss for Dense Long-Tailed Object
Detection", CVPR 2022), as the authors' ``ModelTC/United-Perception`` @52aaeb9
(``up/tasks/det/plugins/efl/models/losses/efl.py``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from detimb.losses.buffers import adopt_saved_shapes, all_reduce_sum, updates_state
from detimb.losses.classification import CLS_LOSSES, BatchClasses, ClassificationLoss, Columns, Form
from detimb.losses.reduce import weighted_sum


@CLS_LOSSES.register("efl")
class EqualizedFocalLoss(ClassificationLoss):
    """Sigmoid focal loss whose focusing factor is each class's own:
    ``gamma_j = gamma_b + scale_factor * (1 - g_j)``, with the weighting factor
    ``gamma_j / gamma_b`` on the class's terms (both detached, as released), and
    ``alpha_t`` as focal loss's. ``g_j`` is the ratio of the accumulated positive to negative
    gradient magnitudes of class j, clamped to [0, 1]; it starts at 1, so the first step is
    plain focal loss. Defaults: gamma_b=2, scale_factor=8 (the released LVIS configs; the
    YOLOX configs use 4), alpha=0.25, loss_weight 1.

    Differences from the released code, each said here:

    - The accumulated gradient is the released one: the gradient of the whole
      classification loss (focal term, alpha, weighting factor, the head's normaliser and
      loss weight) with respect to the logits, which the release captures with a hook on
      the classifier's output. detimb computes it inside ``forward`` by differentiating the
      same reduced loss on a detached copy of the logits, so no state waits between the
      forward and the backward pass; under AMP it is the unscaled gradient.
    - With more than one anchor per location the release's channel bookkeeping
      (``permute(0, 2, 3, 1).reshape(bs, -1, num_classes)`` of the hooked map) assigns
      gradients to the wrong classes; here each column's gradient counts for its own class,
      as the paper intends.
    - ``-log(p_t)`` is computed as the (equal, numerically stable) binary cross-entropy on logits.
    - The statistics are float64 buffers (float32 in the release), all-reduced over ranks
      and saved in checkpoints, as EQLv2's.

    Column 0 is not a class: torchvision's never-positive column in RetinaNet and FCOS (the
    one-stage heads the method is published for), the background output in the RoI head
    (``Columns.WITH_BACKGROUND``, scores ``sigmoid(x_j) * (1 - sigmoid(x_bg))``, as EQLv2's
    released layout; the paper has no two-stage form). It keeps ``gamma_b``.
    """

    form = Form.SIGMOID
    applies_focal_factor = True
    per_class = True
    columns = Columns.WITH_BACKGROUND

    def __init__(self, gamma_b: float = 2.0, scale_factor: float = 8.0, alpha: float = 0.25,
                 loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight)
        if gamma_b <= 0 or scale_factor < 0:
            raise ValueError(f"efl needs gamma_b > 0 and scale_factor >= 0, got {gamma_b}, {scale_factor}")
        if alpha > 1:
            raise ValueError(f"efl needs alpha <= 1 (negative: no alpha), got {alpha}")
        self.gamma_b, self.scale_factor, self.alpha = gamma_b, scale_factor, alpha
        self.register_buffer("pos_grad", torch.zeros(0, dtype=torch.float64))  # (K,), columns 1..K
        self.register_buffer("neg_grad", torch.zeros(0, dtype=torch.float64))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        adopt_saved_shapes(self, state_dict, prefix, ("pos_grad", "neg_grad"))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def focusing_factors(self, width: int, like: Tensor) -> Tensor:
        """(C,) gamma of each of ``width`` columns (column 0: gamma_b), as ``like``'s dtype and device."""
        gamma = like.new_full((width,), self.gamma_b)
        if self.pos_grad.numel():
            if self.pos_grad.numel() != width - 1:
                raise ValueError(f"efl: the classifier has {width} outputs but the loss's statistics hold"
                                 f" {self.pos_grad.numel()} classes")
            ratio = (self.pos_grad / (self.neg_grad + 1e-10)).clamp(0, 1)
            gamma[1:] = (self.gamma_b + self.scale_factor * (1 - ratio)).to(like.dtype)
        return gamma

    def elementwise(self, logits: Tensor, targets: Tensor) -> Tensor:
        if logits.dim() != 2 or logits.shape[1] < 2:
            raise ValueError(f"efl takes (N, C) logits with column 0 not a class, got {tuple(logits.shape)}")
        targets = targets.to(logits.dtype)
        gamma = self.focusing_factors(logits.shape[1], logits)[None, :]
        p = torch.sigmoid(logits)
        p_t = p * targets + (1 - p) * (1 - targets)
        loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        loss = loss * (1 - p_t).pow(gamma) * (gamma / self.gamma_b)
        if self.alpha >= 0:
            loss = loss * (self.alpha * targets + (1 - self.alpha) * (1 - targets))
        return loss

    def forward(self, logits: Tensor, targets: Tensor, weight: Tensor | None = None,
                avg_factor: float | Tensor | None = None, *, batch: BatchClasses | None = None) -> Tensor:
        loss = super().forward(logits, targets, weight, avg_factor)
        if updates_state(self):
            self._collect(logits.detach(), targets.to(logits.dtype), weight, avg_factor)
        return loss

    def _collect(self, logits: Tensor, targets: Tensor, weight: Tensor | None,
                 avg_factor: float | Tensor | None) -> None:
        """Accumulate |dL/dx| of each class's positives and negatives, L the reduced loss."""
        x = logits.clone().requires_grad_(True)
        with torch.enable_grad():
            reduced = self.loss_weight * weighted_sum(self.elementwise(x, targets), weight, avg_factor)
            (grad,) = torch.autograd.grad(reduced, x)
        with torch.no_grad():
            grad = grad.abs()
            pos = all_reduce_sum((grad * targets).sum(0)[1:].to(torch.float64))
            neg = all_reduce_sum((grad * (1 - targets)).sum(0)[1:].to(torch.float64))
            if self.pos_grad.numel() == 0:
                self.pos_grad, self.neg_grad = torch.zeros_like(pos), torch.zeros_like(neg)
            self.pos_grad += pos
            self.neg_grad += neg
