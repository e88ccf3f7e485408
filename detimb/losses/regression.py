"""Box regression losses with the shape contract of detimb's heads.

``forward(pred, target, weight=None, avg_factor=None) -> scalar`` with pred/target (P, 4)
for the P positives and ``weight`` (P,) their sampler weights; ``per_box(pred, target) ->
(P,)`` is the unreduced loss (CARL reweighs it). Delta losses (l1, smooth_l1,
balanced_l1) take encoded deltas; IoU-family losses (``needs_boxes = True``) take
decoded xyxy boxes: the heads decode the predicted deltas against their anchors or
proposals and pass the matched ground-truth boxes.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import complete_box_iou_loss, distance_box_iou_loss, generalized_box_iou_loss

from detimb.losses.reduce import weighted_sum
from detimb.registry import Registry

BOX_LOSSES = Registry("box regression loss")


class BoxLoss(nn.Module):
    """``loss_weight * sum(w * per_box) / avg_factor``. ``needs_boxes``: the loss takes
    decoded xyxy boxes (the IoU family) rather than encoded deltas. ``reduces_per_level``:
    the released code computes ``per_box`` once per pyramid level (its statistics are per
    level), and the objective does the same where the head knows its levels."""

    needs_boxes: ClassVar[bool] = False
    reduces_per_level: ClassVar[bool] = False

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = loss_weight

    def per_box(self, pred: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def reduce(self, per_box: Tensor, weight: Tensor | None = None, avg_factor: float | Tensor | None = None) -> Tensor:
        return self.loss_weight * weighted_sum(per_box, weight, avg_factor)

    def forward(self, pred: Tensor, target: Tensor, weight: Tensor | None = None,
                avg_factor: float | Tensor | None = None) -> Tensor:
        return self.reduce(self.per_box(pred, target), weight, avg_factor)


@BOX_LOSSES.register("smooth_l1")
class SmoothL1Loss(BoxLoss):
    """Smooth L1 (Fast R-CNN, Girshick 2015): 0.5 x^2 / beta for |x| < beta, else |x| - 0.5 beta,
    summed over the 4 deltas. Default beta=1/9 (torchvision's RPN and RoI head), loss_weight 1."""

    def __init__(self, beta: float = 1.0 / 9.0, loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight)
        self.beta = beta

    def per_box(self, pred: Tensor, target: Tensor) -> Tensor:
        return F.smooth_l1_loss(pred, target, beta=self.beta, reduction="none").sum(-1)


@BOX_LOSSES.register("l1")
class L1Loss(BoxLoss):
    """L1 on the 4 deltas (torchvision's RetinaNet default). Default loss_weight 1."""

    def per_box(self, pred: Tensor, target: Tensor) -> Tensor:
        return (pred - target).abs().sum(-1)


@BOX_LOSSES.register("balanced_l1")
class BalancedL1Loss(BoxLoss):
    """Balanced L1 (Pang et al., Libra R-CNN, CVPR 2019). With x = |pred - target| and
    b = e^(gamma / alpha) - 1: ``alpha / b * (b x + 1) ln(b x / beta + 1) - alpha x`` for
    x < beta, else ``gamma x + gamma / b - alpha beta``; gradient ``alpha ln(b x / beta + 1)``
    inside, ``gamma`` outside. Defaults: alpha=0.5, gamma=1.5, beta=1.0, loss_weight 1."""

    def __init__(self, alpha: float = 0.5, gamma: float = 1.5, beta: float = 1.0, loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight)
        if alpha <= 0 or gamma <= 0 or beta <= 0:
            raise ValueError("balanced_l1 needs alpha, gamma and beta > 0")
        self.alpha, self.gamma, self.beta = alpha, gamma, beta

    def per_box(self, pred: Tensor, target: Tensor) -> Tensor:
        x = (pred - target).abs()
        a, g, beta = self.alpha, self.gamma, self.beta
        b = math.e ** (g / a) - 1
        inside = a / b * (b * x + 1) * torch.log(b * x / beta + 1) - a * x
        outside = g * x + g / b - a * beta
        return torch.where(x < beta, inside, outside).sum(-1)


def elementwise_iou(pred: Tensor, target: Tensor, eps: float = 1e-7) -> Tensor:
    """IoU of aligned xyxy boxes (P,), with torchvision's loss eps in the union, computed
    in at least float32: under fp16 autocast an area above 65504 px^2 would be inf."""
    dtype = torch.promote_types(torch.promote_types(pred.dtype, target.dtype), torch.float32)
    pred, target = pred.to(dtype), target.to(dtype)
    lt = torch.maximum(pred[:, :2], target[:, :2])
    rb = torch.minimum(pred[:, 2:], target[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
    return inter / (area(pred) + area(target) - inter + eps)


@BOX_LOSSES.register("iou")
class IoULoss(BoxLoss):
    """IoU loss, 1 - IoU (Yu et al., UnitBox, 2016), on decoded boxes. Default loss_weight 1
    (IoU-family losses usually want more: mmdetection uses 10 for GIoU in the RoI head)."""

    needs_boxes = True

    def per_box(self, pred: Tensor, target: Tensor) -> Tensor:
        return 1 - elementwise_iou(pred, target)


@BOX_LOSSES.register("giou")
class GIoULoss(BoxLoss):
    """Generalized IoU loss (Rezatofighi et al., CVPR 2019): ``torchvision.ops.
    generalized_box_iou_loss`` (eps 1e-7) on decoded boxes. Default loss_weight 1."""

    needs_boxes = True

    def per_box(self, pred: Tensor, target: Tensor) -> Tensor:
        return generalized_box_iou_loss(pred, target, reduction="none", eps=1e-7)


@BOX_LOSSES.register("diou")
class DIoULoss(BoxLoss):
    """Distance IoU loss (Zheng et al., AAAI 2020): ``torchvision.ops.distance_box_iou_loss``
    (eps 1e-7) on decoded boxes. Default loss_weight 1."""

    needs_boxes = True

    def per_box(self, pred: Tensor, target: Tensor) -> Tensor:
        return distance_box_iou_loss(pred, target, reduction="none", eps=1e-7)


@BOX_LOSSES.register("ciou")
class CIoULoss(BoxLoss):
    """Complete IoU loss (Zheng et al., AAAI 2020): ``torchvision.ops.complete_box_iou_loss``
    (eps 1e-7, aspect term always on) on decoded boxes. A predicted box of zero height (an
    FCOS head's first steps predict them), where torchvision's aspect term divides by zero,
    takes mmdetection's form instead, the heights plus eps. ``gated=True`` is mmdetection's
    variant: the aspect term ``alpha v`` only where IoU > 0.5. Defaults: gated=False,
    loss_weight 1."""

    needs_boxes = True

    def __init__(self, gated: bool = False, loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight)
        self.gated = gated

    def per_box(self, pred: Tensor, target: Tensor) -> Tensor:
        if self.gated:
            return self._ciou(pred, target, gate=True)
        flat = (pred[:, 3] - pred[:, 1]) <= 0
        if not bool(flat.any()):
            return complete_box_iou_loss(pred, target, reduction="none", eps=1e-7)
        loss = pred.new_zeros(len(pred))
        ok = torch.where(~flat)[0]
        loss = loss.index_put((ok,), complete_box_iou_loss(pred[ok], target[ok], reduction="none", eps=1e-7))
        bad = torch.where(flat)[0]
        return loss.index_put((bad,), self._ciou(pred[bad], target[bad], gate=False))

    @staticmethod
    def _ciou(pred: Tensor, target: Tensor, gate: bool) -> Tensor:
        """DIoU plus ``alpha v`` with the heights plus eps (mmdetection's ``ciou_loss``);
        ``gate``: the aspect term only where IoU > 0.5."""
        eps = 1e-7
        iou = elementwise_iou(pred, target, eps)
        w_p, h_p = pred[:, 2] - pred[:, 0], pred[:, 3] - pred[:, 1] + eps
        w_t, h_t = target[:, 2] - target[:, 0], target[:, 3] - target[:, 1] + eps
        v = (4 / math.pi**2) * (torch.atan(w_t / h_t) - torch.atan(w_p / h_p)) ** 2
        with torch.no_grad():
            alpha = v / (1 - iou + v + eps)
            if gate:
                alpha = (iou > 0.5).to(v.dtype) * alpha
        return distance_box_iou_loss(pred, target, reduction="none", eps=eps) + alpha * v


@BOX_LOSSES.register("bounded_iou")
class BoundedIoULoss(BoxLoss):
    """Bounded IoU loss (Tychsen-Smith & Petersson, "Improving Object Localization with
    Fitness NMS and Bounded IoU Loss", CVPR 2018), as mmdetection's ``bounded_iou_loss``:
    each of the four coordinates gets the upper bound of the IoU it alone can reach,
    ``1 - max(0, (w_t - 2|dx|) / (w_t + 2|dx| + eps))`` for the centre (and likewise y) and
    ``1 - min(w_t / (w_p + eps), w_p / (w_t + eps))`` for the size (and h), with the target's
    centre and size taken without gradient; each term is smoothed as smooth L1 with ``beta``
    and the four are summed per box. On decoded boxes. Defaults: beta=0.2, eps=1e-3,
    loss_weight 1 (mmdetection's Faster R-CNN config uses 10)."""

    needs_boxes = True

    def __init__(self, beta: float = 0.2, eps: float = 1e-3, loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight)
        if beta <= 0 or eps <= 0:
            raise ValueError(f"bounded_iou needs beta > 0 and eps > 0, got beta={beta}, eps={eps}")
        self.beta, self.eps = beta, eps

    def per_box(self, pred: Tensor, target: Tensor) -> Tensor:
        pred_ctr, pred_wh = (pred[:, :2] + pred[:, 2:]) / 2, pred[:, 2:] - pred[:, :2]
        with torch.no_grad():
            target_ctr, target_wh = (target[:, :2] + target[:, 2:]) / 2, target[:, 2:] - target[:, :2]
        d = (target_ctr - pred_ctr).abs()
        loss_ctr = 1 - ((target_wh - 2 * d) / (target_wh + 2 * d + self.eps)).clamp(min=0)
        loss_wh = 1 - torch.minimum(target_wh / (pred_wh + self.eps), pred_wh / (target_wh + self.eps))
        terms = torch.cat([loss_ctr, loss_wh], dim=-1)
        return torch.where(terms < self.beta, 0.5 * terms**2 / self.beta, terms - 0.5 * self.beta).sum(-1)
