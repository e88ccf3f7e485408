"""Region proposal network whose training objective is injected."""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead, concat_box_prediction_layers

from detimb.models.heads.matching import match_to_ground_truth
from detimb.models.heads.batch import Predictions, Targets
from detimb.models.heads.objective import HeadObjective


class DetimbRPN(RegionProposalNetwork):
    """torchvision's RPN whose losses come from ``objective`` (sampler, objectness loss, box
    loss, balancer; see ``HeadObjective``).

    Anchors are matched as torchvision matches them (IoU >= fg_iou_thresh positive,
    < bg_iou_thresh negative, each ground truth's best anchors positive). With the default
    slots (random 256 @ 0.5, BCE, smooth L1 beta 1/9) the losses equal torchvision's.
    Inference is torchvision's. torchvision's own sampler attribute is left unused: the
    objective's sampler replaces it.
    """

    def __init__(self, anchor_generator: AnchorGenerator, head: RPNHead, fg_iou_thresh: float,
                 bg_iou_thresh: float, pre_nms_top_n: dict[str, int], post_nms_top_n: dict[str, int],
                 nms_thresh: float, score_thresh: float, objective: HeadObjective) -> None:
        super().__init__(anchor_generator, head, fg_iou_thresh, bg_iou_thresh, batch_size_per_image=1,
                         positive_fraction=1.0, pre_nms_top_n=pre_nms_top_n, post_nms_top_n=post_nms_top_n,
                         nms_thresh=nms_thresh, score_thresh=score_thresh)
        del self.fg_bg_sampler
        self.objective = objective

    def forward(self, images: ImageList, features: dict[str, Tensor],
                targets: list[dict[str, Tensor]] | None = None) -> tuple[list[Tensor], dict[str, Tensor]]:
        """torchvision's forward; training losses from the objective."""
        levels = list(features.values())
        objectness, pred_bbox_deltas = self.head(levels)
        anchors = self.anchor_generator(images, levels)
        num_anchors_per_level = [o[0].shape[0] * o[0].shape[1] * o[0].shape[2] for o in objectness]
        objectness, pred_bbox_deltas = concat_box_prediction_layers(objectness, pred_bbox_deltas)
        proposals = self.box_coder.decode(pred_bbox_deltas.detach(), anchors).view(len(anchors), -1, 4)
        boxes, _ = self.filter_proposals(proposals, objectness, images.image_sizes, num_anchors_per_level)
        if not self.training:
            return boxes, {}
        if targets is None:
            raise ValueError("targets are required in training mode")
        gt = [t["boxes"] for t in targets]
        matches = [match_to_ground_truth(self.proposal_matcher, a, g, torch.ones(len(g), dtype=torch.int64,
                                                                                 device=g.device))
                   for a, g in zip(anchors, gt)]
        losses = self.objective(Targets.from_matches(matches, anchors, gt, anchors_per_level=num_anchors_per_level),
                                Predictions(objectness.flatten(), pred_bbox_deltas))
        return boxes, losses
