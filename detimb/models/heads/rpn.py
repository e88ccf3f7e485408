"""Region proposal network whose anchor sampler and losses are injected."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.ops import box_iou

from detimb.losses.balancers import BalanceContext
from detimb.models.heads.common import apply_balancer, batch_gt_ids, box_loss_inputs
from detimb.samplers import Candidates, Sampler
from detimb.samplers.stats import delta_iou, sampling_stats


class DetimbRPN(RegionProposalNetwork):
    """torchvision's RPN with ``sampler``, ``loss_cls`` (objectness) and ``loss_bbox`` injected.

    Anchors are matched as torchvision matches them (IoU >= fg_iou_thresh positive,
    < bg_iou_thresh negative, each ground truth's best anchors positive); the sampler sees
    their labels, IoUs, matched ground truth and, when it asks, their current objectness
    loss. Hard samplers: both terms are divided by the number of kept anchors, so the
    defaults (random 256 @ 0.5, BCE, smooth L1 beta 1/9) equal torchvision's. Soft
    samplers keep every anchor and weigh the objectness loss. ``sampling_stats`` holds what
    the last training step kept. Inference is torchvision's.
    """

    def __init__(self, anchor_generator: AnchorGenerator, head: RPNHead, fg_iou_thresh: float,
                 bg_iou_thresh: float, pre_nms_top_n: dict[str, int], post_nms_top_n: dict[str, int],
                 nms_thresh: float, score_thresh: float, sampler: Sampler, loss_cls: nn.Module,
                 loss_bbox: nn.Module, balancer: nn.Module | None = None) -> None:
        # torchvision builds its own sampler from these two numbers; detimb's replaces it.
        super().__init__(anchor_generator, head, fg_iou_thresh, bg_iou_thresh, 256, 0.5, pre_nms_top_n,
                         post_nms_top_n, nms_thresh, score_thresh)
        self.fg_bg_sampler = sampler
        self.loss_cls = loss_cls
        self.loss_bbox = loss_bbox
        self.balancer = balancer  # one that only reweighs: torchvision's RPN returns exactly two terms
        self.sampling_stats: dict[str, Tensor] = {}
        self.balance_stats: dict[str, Tensor] = {}
        self._matches: list[tuple[Tensor, Tensor]] = []

    def assign_targets_to_anchors(self, anchors: list[Tensor], targets: list[dict[str, Tensor]]
                                  ) -> tuple[list[Tensor], list[Tensor]]:
        """torchvision's matching; also keeps each anchor's IoU and ground-truth index for
        ``compute_loss`` (called next in the same forward)."""
        labels, matched_boxes, self._matches = [], [], []
        self._anchors = anchors
        for anchors_i, target in zip(anchors, targets):
            gt = target["boxes"]
            if gt.numel() == 0:
                zeros = torch.zeros(anchors_i.shape[0], dtype=torch.float32, device=anchors_i.device)
                labels.append(zeros)
                matched_boxes.append(torch.zeros_like(anchors_i))
                self._matches.append((zeros, zeros.long()))
                continue
            quality = box_iou(gt, anchors_i)
            matched = self.proposal_matcher(quality)
            index = matched.clamp(min=0)
            lab = (matched >= 0).to(torch.float32)
            lab[matched == self.proposal_matcher.BELOW_LOW_THRESHOLD] = 0.0
            lab[matched == self.proposal_matcher.BETWEEN_THRESHOLDS] = -1.0
            labels.append(lab)
            matched_boxes.append(gt[index])
            self._matches.append((quality.max(dim=0).values, index))
        self._matched_boxes = matched_boxes
        return labels, matched_boxes

    def compute_loss(self, objectness: Tensor, pred_bbox_deltas: Tensor, labels: list[Tensor],
                     regression_targets: list[Tensor]) -> tuple[Tensor, Tensor]:
        """objectness (sum_i A_i, 1), pred_bbox_deltas (sum_i A_i, 4); labels per image in {1, 0, -1}."""
        objectness = objectness.flatten()
        labels_all = torch.cat(labels)
        targets = torch.cat(regression_targets)
        sampler = self.fg_bg_sampler
        scores: list[Tensor | None] = [None] * len(labels)
        if sampler.needs_losses:
            with torch.no_grad():
                current = F.binary_cross_entropy_with_logits(objectness, labels_all.clamp(min=0), reduction="none")
                if getattr(sampler, "with_box_loss", False):
                    box = F.smooth_l1_loss(pred_bbox_deltas, targets, beta=1 / 9, reduction="none").sum(1)
                    current = current + torch.where(labels_all > 0, box, torch.zeros_like(box))
            scores = list(current.split([len(lab) for lab in labels]))
        candidates = [Candidates(lab.long(), iou, gt, score)
                      for lab, (iou, gt), score in zip(labels, self._matches, scores)]
        weights = torch.cat(sampler(candidates))
        kept = torch.where(weights > 0)[0]
        positive = kept[labels_all[kept] > 0]
        ious = torch.cat([iou for iou, _ in self._matches])
        self.sampling_stats = sampling_stats(labels_all[kept].long(), ious[kept], len(labels))
        normalizer = kept.numel()
        cls_weight = weights[kept]
        if sampler.soft:
            gt_ids = batch_gt_ids([gt for _, gt in self._matches])
            with torch.no_grad():
                plain = F.binary_cross_entropy_with_logits(objectness[kept], labels_all[kept], reduction="none")
                pred_ious = torch.zeros_like(plain)
                pos_in_kept = labels_all[kept] > 0
                pred_ious[pos_in_kept] = delta_iou(pred_bbox_deltas[positive], targets[positive],
                                                   self.box_coder.weights)
            cls_weight = sampler.reweight(objectness[kept], labels_all[kept], labels_all[kept].long(),
                                          gt_ids=gt_ids[kept], pred_ious=pred_ious, loss=plain)
            cls_normalizer = sampler.normalizer(kept.numel(), positive.numel())
        else:
            cls_normalizer = normalizer
        pred, goal = box_loss_inputs(self.loss_bbox, self.box_coder, pred_bbox_deltas[positive], targets[positive],
                                     torch.cat(self._anchors)[positive], torch.cat(self._matched_boxes)[positive])
        per_box = self.loss_bbox.per_box(pred, goal)
        losses = {"loss_objectness": self.loss_cls(objectness[kept], labels_all[kept], cls_weight, cls_normalizer),
                  "loss_rpn_box_reg": self.loss_bbox.reduce(per_box, weights[positive], normalizer)}
        context = BalanceContext(objectness[kept], labels_all[kept].long(), torch.where(labels_all[kept] > 0)[0],
                                 self.loss_bbox.loss_weight * per_box, float(normalizer), True, "loss_objectness",
                                 "loss_rpn_box_reg")
        losses, self.balance_stats = apply_balancer(self.balancer, losses, context)
        return losses["loss_objectness"], losses["loss_rpn_box_reg"]
