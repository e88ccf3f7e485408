"""RetinaNet whose training objective is injected."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torchvision.models.detection.retinanet import (
    RetinaNet,
    RetinaNetClassificationHead,
    RetinaNetHead,
    RetinaNetRegressionHead,
)

from detimb.models.heads.matching import match_to_ground_truth
from detimb.models.heads.batch import dense_batch
from detimb.models.heads.objective import HeadObjective

ANCHORS_PER_LEVEL = "anchors_per_level"


class DetimbRetinaNetHead(RetinaNetHead):
    """RetinaNet's head (Lin et al., ICCV 2017): torchvision's sub-heads, with the losses
    from ``objective`` (sampler, classification loss, box loss, balancer; see
    ``HeadObjective``, which for this head normalises image by image and averages the
    images, as torchvision does). Defaults: sampler ``all`` with sigmoid focal loss
    (alpha 0.25, gamma 2) and L1 — torchvision's RetinaNet; equivalently sampler ``focal``
    with ``binary_cross_entropy``. Classification bias from ``prior_probability`` 0.01;
    ``norm_layer`` (None; GroupNorm(32) in the v2 architecture) after each conv.

    In training its outputs also hold ``ANCHORS_PER_LEVEL``, a CPU int64 tensor of each
    level's anchor count per image: torchvision's ``compute_loss`` is not given the
    feature maps, and losses that reduce per level (GHM, as mmdetection's anchor heads
    apply it) need them.
    """

    def __init__(self, in_channels: int, num_anchors: int, num_classes: int, objective: HeadObjective,
                 prior_probability: float = 0.01, norm_layer: Callable[..., nn.Module] | None = None) -> None:
        nn.Module.__init__(self)
        if not 0.0 < prior_probability < 1.0:
            raise ValueError(f"prior_probability must be in (0, 1), got {prior_probability}")
        self.classification_head = RetinaNetClassificationHead(in_channels, num_anchors, num_classes,
                                                               prior_probability, norm_layer=norm_layer)
        self.regression_head = RetinaNetRegressionHead(in_channels, num_anchors, norm_layer=norm_layer)
        self.objective = objective

    def forward(self, x: list[Tensor]) -> dict[str, Tensor]:
        outputs = super().forward(x)
        if self.training:  # torchvision's eval path splits every output by level: add nothing there
            per_location = self.classification_head.num_anchors
            outputs[ANCHORS_PER_LEVEL] = torch.tensor([f.shape[-2] * f.shape[-1] * per_location for f in x])
        return outputs


def without_background(detections: list[dict[str, Tensor]]) -> list[dict[str, Tensor]]:
    """One-stage detections without label 0: torchvision's sigmoid classifiers keep a column
    for background that is never a positive target, and at a low score threshold it still
    yields detections, which name no class."""
    return [{k: v[d["labels"] > 0] for k, v in d.items()} for d in detections]


class DetimbRetinaNet(RetinaNet):
    """torchvision's RetinaNet taking its input transform by injection (see
    DetectionTransform) and computing its training losses with its head's objective.
    Inference is torchvision's, less detections of the background column (label 0)."""

    def __init__(self, backbone: nn.Module, num_classes: int, anchor_generator: nn.Module,
                 head: DetimbRetinaNetHead, transform: nn.Module, **kwargs: float) -> None:
        super().__init__(backbone, num_classes, anchor_generator=anchor_generator, head=head, **kwargs)
        self.transform = transform

    def postprocess_detections(self, head_outputs: dict[str, list[Tensor]], anchors: list[list[Tensor]],
                               image_shapes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        return without_background(super().postprocess_detections(head_outputs, anchors, image_shapes))

    def compute_loss(self, targets: list[dict[str, Tensor]], head_outputs: dict[str, Tensor],
                     anchors: list[Tensor]) -> dict[str, Tensor]:
        """torchvision's matching, then the head's objective over all images' anchors."""
        matches = [match_to_ground_truth(self.proposal_matcher, a, t["boxes"], t["labels"])
                   for a, t in zip(anchors, targets)]
        return self.head.objective(*dense_batch(matches, anchors, targets, head_outputs,
                                                anchors_per_level=head_outputs[ANCHORS_PER_LEVEL].tolist()))
