"""SSD and SSDlite whose training objective is injected."""

from __future__ import annotations

from typing import Any

from torch import Tensor
from torchvision.models.detection.ssd import SSD

from detimb.models.heads.matching import matches_from_indices
from detimb.models.heads.batch import dense_batch
from detimb.models.heads.objective import HeadObjective
from detimb.models.transform import DetectionTransform


class DetimbSSD(SSD):
    """torchvision's SSD (Liu et al., ECCV 2016) and SSDlite: its backbone, default boxes,
    matching (``SSDMatcher``, IoU 0.5), head and inference, with the losses from
    ``objective``. torchvision's loss is the config ``sampler: {type: ohem, mode: ratio,
    neg_pos_ratio: 3, normalize_by: positives}``, cross-entropy and smooth L1 (beta 1), both
    divided by the batch's positives; the defaults reproduce it (the tests check).
    """

    def __init__(self, *args: Any, objective: HeadObjective, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.objective = objective
        t = self.transform  # torchvision's, made by SSD: the same resize, and uint8 images accepted
        self.transform = DetectionTransform(True, t.min_size[0], t.max_size, t.image_mean, t.image_std,
                                            t.size_divisible, fixed_size=t.fixed_size)

    def compute_loss(self, targets: list[dict[str, Tensor]], head_outputs: dict[str, Tensor], anchors: list[Tensor],
                     matched_idxs: list[Tensor]) -> dict[str, Tensor]:
        matches = [matches_from_indices(m, a, t["boxes"], t["labels"])
                   for m, a, t in zip(matched_idxs, anchors, targets)]
        return self.objective(*dense_batch(matches, anchors, targets, head_outputs))
