"""What every detimb head shares: the inputs a box loss wants."""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.models.detection._utils import BoxCoder


def box_loss_inputs(loss: nn.Module, box_coder: BoxCoder, deltas: Tensor, target_deltas: Tensor, anchors: Tensor,
                    gt_boxes: Tensor) -> tuple[Tensor, Tensor]:
    """(pred, target) for ``loss``: encoded deltas, or for IoU-family losses
    (``needs_boxes``) the predicted boxes decoded against their anchors/proposals and the
    matched ground-truth boxes. All (P, 4) for the P positives."""
    if getattr(loss, "needs_boxes", False):
        return box_coder.decode_single(deltas, anchors), gt_boxes
    return deltas, target_deltas
