"""FCOS whose training objective is injected."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.fcos import FCOS, FCOSClassificationHead, FCOSHead, FCOSRegressionHead

from detimb.models.heads.coders import LinearBoxCoder
from detimb.models.heads.matching import matches_from_indices
from detimb.models.heads.batch import Targets, dense_batch
from detimb.models.heads.objective import HeadObjective
from detimb.models.heads.retinanet import without_background


class DetimbFCOSHead(FCOSHead):
    """FCOS's head (Tian et al., ICCV 2019), torchvision's sub-heads, with the classification
    and box terms from ``objective`` (see ``HeadObjective``: both divided by the batch's
    positives, as torchvision's FCOS) and torchvision's centerness term (BCE on the
    positives' centerness, over the same count) beside them. Defaults: sampler ``all``,
    sigmoid focal loss (alpha 0.25, gamma 2) and GIoU: torchvision's FCOS. Classification
    bias from ``prior_probability`` 0.01; ``num_convs`` 4.
    """

    def __init__(self, in_channels: int, num_anchors: int, num_classes: int, objective: HeadObjective,
                 num_convs: int = 4, prior_probability: float = 0.01) -> None:
        nn.Module.__init__(self)
        if not 0.0 < prior_probability < 1.0:
            raise ValueError(f"prior_probability must be in (0, 1), got {prior_probability}")
        self.box_coder = LinearBoxCoder(normalize_by_size=True)
        self.classification_head = FCOSClassificationHead(in_channels, num_anchors, num_classes, num_convs,
                                                          prior_probability)
        self.regression_head = FCOSRegressionHead(in_channels, num_anchors, num_convs)
        self.objective = objective

    def compute_loss(self, targets: list[dict[str, Tensor]], head_outputs: dict[str, Tensor], anchors: list[Tensor],
                     matched_idxs: list[Tensor]) -> dict[str, Tensor]:
        matches = [matches_from_indices(m, a, t["boxes"], t["labels"])
                   for m, a, t in zip(matched_idxs, anchors, targets)]
        batch, predictions = dense_batch(matches, anchors, targets, head_outputs)
        losses = self.objective(batch, predictions)
        losses["bbox_ctrness"] = self.centerness_loss(batch, head_outputs["bbox_ctrness"].flatten())
        return losses

    def centerness_loss(self, batch: Targets, centerness: Tensor) -> Tensor:
        """torchvision's centerness term: BCE of the positives' predicted centerness against
        ``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))`` of their targets, over their count."""
        assert batch.boxes is not None and batch.gt_boxes is not None
        positive = batch.labels > 0
        goal = self.box_coder.encode(batch.boxes[positive], batch.gt_boxes[positive])
        lr, tb = goal[:, [0, 2]], goal[:, [1, 3]]
        target = torch.sqrt((lr.min(dim=-1)[0] / lr.max(dim=-1)[0]) * (tb.min(dim=-1)[0] / tb.max(dim=-1)[0]))
        loss = F.binary_cross_entropy_with_logits(centerness[positive], target, reduction="sum")
        return loss / max(1, int(positive.sum()))


class DetimbFCOS(FCOS):
    """torchvision's FCOS (its centre-sampling matching and inference, less detections of
    the background column, label 0) taking its input transform by injection and computing
    its training losses with its head's objective."""

    def __init__(self, backbone: nn.Module, num_classes: int, anchor_generator: nn.Module, head: DetimbFCOSHead,
                 transform: nn.Module, **kwargs: float) -> None:
        super().__init__(backbone, num_classes, anchor_generator=anchor_generator, head=head, **kwargs)
        self.transform = transform

    def postprocess_detections(self, head_outputs: dict[str, list[Tensor]], anchors: list[list[Tensor]],
                               image_sizes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        return without_background(super().postprocess_detections(head_outputs, anchors, image_sizes))
