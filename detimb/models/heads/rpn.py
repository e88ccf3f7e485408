"""Region proposal network whose anchor sampler and losses are injected."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead

from detimb.samplers import Sampler


class DetimbRPN(RegionProposalNetwork):
    """torchvision's RPN with ``sampler``, ``loss_cls`` (objectness) and ``loss_bbox`` injected.

    With the defaults (random 256 @ 0.5, binary cross-entropy, smooth L1 beta 1/9) the losses
    equal torchvision's: both terms are normalised by the number of sampled anchors.
    """

    def __init__(self, anchor_generator: AnchorGenerator, head: RPNHead, fg_iou_thresh: float,
                 bg_iou_thresh: float, pre_nms_top_n: dict[str, int], post_nms_top_n: dict[str, int],
                 nms_thresh: float, score_thresh: float, sampler: Sampler, loss_cls: nn.Module,
                 loss_bbox: nn.Module) -> None:
        # torchvision builds its own sampler from these two numbers; detimb's replaces it.
        super().__init__(anchor_generator, head, fg_iou_thresh, bg_iou_thresh, 256, 0.5, pre_nms_top_n,
                         post_nms_top_n, nms_thresh, score_thresh)
        self.fg_bg_sampler = sampler
        self.loss_cls = loss_cls
        self.loss_bbox = loss_bbox

    def compute_loss(self, objectness: Tensor, pred_bbox_deltas: Tensor, labels: list[Tensor],
                     regression_targets: list[Tensor]) -> tuple[Tensor, Tensor]:
        """objectness (sum_i A_i, 1), pred_bbox_deltas (sum_i A_i, 4); labels per image in {1, 0, -1}."""
        weights = torch.cat(self.fg_bg_sampler(labels))
        labels_all = torch.cat(labels)
        targets = torch.cat(regression_targets)
        sampled = torch.where(weights > 0)[0]
        positive = sampled[labels_all[sampled] > 0]
        normalizer = sampled.numel()
        loss_bbox = self.loss_bbox(pred_bbox_deltas[positive], targets[positive], weights[positive], normalizer)
        loss_cls = self.loss_cls(objectness.flatten()[sampled], labels_all[sampled], weights[sampled], normalizer)
        return loss_cls, loss_bbox
