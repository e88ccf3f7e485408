"""RetinaNet whose classification and regression losses are injected."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.detection.retinanet import (
    RetinaNet,
    RetinaNetClassificationHead,
    RetinaNetHead,
    RetinaNetRegressionHead,
)


def _mean(values: list[Tensor]) -> Tensor:
    return torch.stack(values).sum() / max(1, len(values))


class _ClassificationHead(RetinaNetClassificationHead):
    def __init__(self, in_channels: int, num_anchors: int, num_classes: int, prior_probability: float,
                 loss: nn.Module) -> None:
        super().__init__(in_channels, num_anchors, num_classes, prior_probability)
        self.loss = loss

    def compute_loss(self, targets: list[dict[str, Tensor]], head_outputs: dict[str, Tensor],
                     matched_idxs: list[Tensor]) -> Tensor:
        losses = []
        for target, logits, matched in zip(targets, head_outputs["cls_logits"], matched_idxs):
            foreground = matched >= 0
            onehot = torch.zeros_like(logits)
            onehot[foreground, target["labels"][matched[foreground]]] = 1.0
            valid = matched != self.BETWEEN_THRESHOLDS
            losses.append(self.loss(logits[valid], onehot[valid], None, max(1, int(foreground.sum()))))
        return _mean(losses)


class _RegressionHead(RetinaNetRegressionHead):
    def __init__(self, in_channels: int, num_anchors: int, loss: nn.Module) -> None:
        super().__init__(in_channels, num_anchors)
        self.loss = loss

    def compute_loss(self, targets: list[dict[str, Tensor]], head_outputs: dict[str, Tensor],
                     anchors: list[Tensor], matched_idxs: list[Tensor]) -> Tensor:
        losses = []
        for target, deltas, anchors_i, matched in zip(targets, head_outputs["bbox_regression"], anchors, matched_idxs):
            foreground = torch.where(matched >= 0)[0]
            gt = target["boxes"][matched[foreground]]
            goal = self.box_coder.encode_single(gt, anchors_i[foreground])
            losses.append(self.loss(deltas[foreground], goal, None, max(1, foreground.numel())))
        return _mean(losses)


class DetimbRetinaNetHead(RetinaNetHead):
    """RetinaNet's head (Lin et al., ICCV 2017) with ``loss_cls`` and ``loss_bbox`` injected.

    Both are summed over each image's anchors, divided by its number of foreground anchors
    (at least 1) and averaged over images, as torchvision does. Defaults: sigmoid focal
    (alpha 0.25, gamma 2) and L1; classification bias from ``prior_probability`` 0.01.
    """

    def __init__(self, in_channels: int, num_anchors: int, num_classes: int, loss_cls: nn.Module,
                 loss_bbox: nn.Module, prior_probability: float = 0.01) -> None:
        nn.Module.__init__(self)
        if not 0.0 < prior_probability < 1.0:
            raise ValueError(f"prior_probability must be in (0, 1), got {prior_probability}")
        self.classification_head = _ClassificationHead(in_channels, num_anchors, num_classes, prior_probability,
                                                       loss_cls)
        self.regression_head = _RegressionHead(in_channels, num_anchors, loss_bbox)


class DetimbRetinaNet(RetinaNet):
    """torchvision's RetinaNet taking its input transform by injection (see DetectionTransform)."""

    def __init__(self, backbone: nn.Module, num_classes: int, anchor_generator: nn.Module,
                 head: DetimbRetinaNetHead, transform: nn.Module, **kwargs: float) -> None:
        super().__init__(backbone, num_classes, anchor_generator=anchor_generator, head=head, **kwargs)
        self.transform = transform
