"""FCOS's box coder with the interface of the ``BoxCoder`` the other heads use."""

from __future__ import annotations

from torch import Tensor
from torchvision.models.detection._utils import BoxLinearCoder


class LinearBoxCoder(BoxLinearCoder):
    """torchvision's FCOS coder (distances from the anchor's centre to the four sides, over
    its size) with the ``encode_single``/``decode_single`` signature of ``BoxCoder``, which
    the objective calls: ``encode_single(gt_boxes, anchors)``, ``decode_single(deltas, anchors)``."""

    def encode_single(self, gt_boxes: Tensor, anchors: Tensor) -> Tensor:
        return self.encode(anchors, gt_boxes)

    def decode_single(self, deltas: Tensor, anchors: Tensor) -> Tensor:
        return self.decode(deltas, anchors)
