"""RetinaNet whose anchor sampler and losses are injected."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.retinanet import (
    RetinaNet,
    RetinaNetClassificationHead,
    RetinaNetHead,
    RetinaNetRegressionHead,
)
from torchvision.ops import box_iou

from detimb.losses.balancers import BalanceContext
from detimb.models.heads.common import apply_balancer, box_loss_inputs
from detimb.samplers import Candidates, Sampler
from detimb.samplers.stats import delta_iou, sampling_stats


class DetimbRetinaNetHead(RetinaNetHead):
    """RetinaNet's head (Lin et al., ICCV 2017) with ``sampler``, ``loss_cls`` and ``loss_bbox``
    injected; the sub-heads are torchvision's.

    Per image, anchors matched as torchvision does are handed to the sampler (labels, IoU,
    matched ground truth, and for OHEM the summed per-class BCE of each anchor); kept
    anchors' classification loss (one-hot targets) and the positives' box loss are summed,
    divided by the image's number of foreground anchors (at least 1) and averaged over
    images, as torchvision does. Defaults: sampler ``all`` with sigmoid focal loss
    (alpha 0.25, gamma 2) and L1 — torchvision's RetinaNet; equivalently sampler ``focal``
    with ``binary_cross_entropy``. Classification bias from ``prior_probability`` 0.01.
    """

    def __init__(self, in_channels: int, num_anchors: int, num_classes: int, sampler: Sampler,
                 loss_cls: nn.Module, loss_bbox: nn.Module, prior_probability: float = 0.01,
                 balancer: nn.Module | None = None) -> None:
        nn.Module.__init__(self)
        if not 0.0 < prior_probability < 1.0:
            raise ValueError(f"prior_probability must be in (0, 1), got {prior_probability}")
        self.classification_head = RetinaNetClassificationHead(in_channels, num_anchors, num_classes,
                                                               prior_probability)
        self.regression_head = RetinaNetRegressionHead(in_channels, num_anchors)
        self.sampler = sampler
        self.loss_cls = loss_cls
        self.loss_bbox = loss_bbox
        self.balancer = balancer
        self.sampling_stats: dict[str, Tensor] = {}
        self.balance_stats: dict[str, Tensor] = {}

    def compute_loss(self, targets: list[dict[str, Tensor]], head_outputs: dict[str, Tensor],
                     anchors: list[Tensor], matched_idxs: list[Tensor],
                     anchor_ious: list[Tensor] | None = None) -> dict[str, Tensor]:
        """``anchor_ious``: each anchor's best IoU with the image's ground truth, from the matching
        (``DetimbRetinaNet.compute_loss`` passes it; computed here only when absent)."""
        box_coder = self.regression_head.box_coder
        between = self.classification_head.BETWEEN_THRESHOLDS
        cls_losses, box_losses, kept_labels, kept_ious = [], [], [], []
        pos_logits, pos_labels, pos_box, total_fg = [], [], [], 0
        if anchor_ious is None:
            anchor_ious = [box_iou(t["boxes"], a).max(dim=0).values if t["boxes"].numel()
                           else torch.zeros(len(a), device=a.device) for t, a in zip(targets, anchors)]
        for target, logits, deltas, anchors_i, matched, ious in zip(
                targets, head_outputs["cls_logits"], head_outputs["bbox_regression"], anchors, matched_idxs,
                anchor_ious):
            foreground = matched >= 0
            index = matched.clamp(min=0)
            labels = torch.where(foreground, target["labels"][index] if target["labels"].numel() else index,
                                 torch.where(matched == between, -1, 0))
            onehot = torch.zeros_like(logits)
            onehot[foreground, labels[foreground]] = 1.0
            pos_idx = torch.where(foreground)[0]
            goal = box_coder.encode_single(target["boxes"][index[pos_idx]], anchors_i[pos_idx])
            losses = None
            if self.sampler.needs_losses:
                with torch.no_grad():
                    losses = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none").sum(1)
                    if getattr(self.sampler, "with_box_loss", False):
                        losses[pos_idx] += F.l1_loss(deltas[pos_idx], goal, reduction="none").sum(1)
            (weight,) = self.sampler([Candidates(labels, ious, index, losses)])
            keep = weight > 0
            num_fg = max(1, int(foreground.sum()))
            cls_weight = weight[keep]
            if self.sampler.soft:
                with torch.no_grad():
                    plain = F.binary_cross_entropy_with_logits(logits[keep], onehot[keep], reduction="none")
                    pred_ious = torch.zeros(len(matched), device=logits.device)
                    pred_ious[pos_idx] = delta_iou(deltas[pos_idx], goal, box_coder.weights)
                cls_weight = self.sampler.reweight(logits[keep], onehot[keep], labels[keep], gt_ids=index[keep],
                                                   pred_ious=pred_ious[keep], loss=plain)
            cls_losses.append(self.loss_cls(logits[keep], onehot[keep], cls_weight, num_fg))
            pos = pos_idx[keep[pos_idx]]
            pred, box_goal = box_loss_inputs(self.loss_bbox, box_coder, deltas[pos], goal[keep[pos_idx]],
                                             anchors_i[pos], target["boxes"][index[pos]])
            per_box = self.loss_bbox.per_box(pred, box_goal)
            box_losses.append(self.loss_bbox.reduce(per_box, weight[pos], num_fg))
            pos_logits.append(logits[pos])
            pos_labels.append(labels[pos])
            pos_box.append(self.loss_bbox.loss_weight * per_box)
            total_fg += num_fg
            kept_labels.append(labels[keep])
            kept_ious.append(ious[keep])
        self.sampling_stats = sampling_stats(torch.cat(kept_labels), torch.cat(kept_ious), len(targets),
                                             self.classification_head.num_classes - 1)
        n = max(1, len(targets))
        losses = {"classification": torch.stack(cls_losses).sum() / n,
                  "bbox_regression": torch.stack(box_losses).sum() / n}
        labels_pos = torch.cat(pos_labels)
        context = BalanceContext(torch.cat(pos_logits), labels_pos,
                                 torch.arange(len(labels_pos), device=labels_pos.device), torch.cat(pos_box),
                                 float(max(1, total_fg)), True, "classification", "bbox_regression")
        losses, self.balance_stats = apply_balancer(self.balancer, losses, context)
        return losses


class DetimbRetinaNet(RetinaNet):
    """torchvision's RetinaNet taking its input transform by injection (see DetectionTransform)."""

    def __init__(self, backbone: nn.Module, num_classes: int, anchor_generator: nn.Module,
                 head: DetimbRetinaNetHead, transform: nn.Module, **kwargs: float) -> None:
        super().__init__(backbone, num_classes, anchor_generator=anchor_generator, head=head, **kwargs)
        self.transform = transform

    def compute_loss(self, targets: list[dict[str, Tensor]], head_outputs: dict[str, Tensor],
                     anchors: list[Tensor]) -> dict[str, Tensor]:
        """torchvision's matching, also keeping each anchor's best IoU for the sampler (the IoU
        matrix is computed once, here)."""
        matched_idxs, anchor_ious = [], []
        for anchors_i, target in zip(anchors, targets):
            if target["boxes"].numel() == 0:
                matched_idxs.append(torch.full((len(anchors_i),), -1, dtype=torch.int64, device=anchors_i.device))
                anchor_ious.append(torch.zeros(len(anchors_i), device=anchors_i.device))
                continue
            quality = box_iou(target["boxes"], anchors_i)
            matched_idxs.append(self.proposal_matcher(quality))
            anchor_ious.append(quality.max(dim=0).values)
        return self.head.compute_loss(targets, head_outputs, anchors, matched_idxs, anchor_ious)
