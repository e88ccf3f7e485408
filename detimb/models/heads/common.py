"""What every detimb head shares: the inputs a box loss wants."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.detection._utils import BoxCoder

from detimb.losses.balancers import BalanceContext


def box_loss_inputs(loss: nn.Module, box_coder: BoxCoder, deltas: Tensor, target_deltas: Tensor, anchors: Tensor,
                    gt_boxes: Tensor) -> tuple[Tensor, Tensor]:
    """(pred, target) for ``loss``: encoded deltas, or for IoU-family losses
    (``needs_boxes``) the predicted boxes decoded against their anchors/proposals and the
    matched ground-truth boxes. All (P, 4) for the P positives."""
    if getattr(loss, "needs_boxes", False):
        return box_coder.decode_single(deltas, anchors), gt_boxes
    return deltas, target_deltas


def batch_gt_ids(per_image: list[Tensor]) -> Tensor:
    """Ground-truth indices of several images made unique across the batch (image i's index
    j becomes i * 2^20 + j), for samplers that group candidates by ground truth."""
    return torch.cat([index + (i << 20) for i, index in enumerate(per_image)])


def apply_balancer(balancer: nn.Module | None, losses: dict[str, Tensor], context: BalanceContext
                   ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """The balanced terms, and for the log the raw terms plus what the balancer reports."""
    if balancer is None:
        return losses, {}
    stats = {f"raw/{k}": v.detach() for k, v in losses.items()}
    losses = balancer(losses, context)
    return losses, {**stats, **getattr(balancer, "balance_stats", {})}
