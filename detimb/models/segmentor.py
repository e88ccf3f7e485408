"""Semantic segmentation as dense prediction: any backbone + any neck + the dense head."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from detimb.models.heads.dense import DenseHead
from detimb.models.necks import BackboneWithNeck
from detimb.models.transform import SegmentationTransform


class SemanticSegmentor(nn.Module):
    """``forward(images, targets=None)`` in torchvision's detector convention.

    images: a list of (3, H_i, W_i) float tensors in [0, 1]. Training: ``targets`` a list of
    dicts with ``mask`` (H_i, W_i) int64 (and ``mask_b``, ``mix`` under mixup); returns
    ``{"loss_seg": scalar}``. Inference: one dict per image with ``sem_seg`` (C, H_i, W_i),
    the softmax probabilities of background and the K classes at the input's size.

    Args:
        backbone: backbone + neck returning an OrderedDict of levels, finest first.
        levels: the neck levels the head fuses (extra pooled levels left out).
        head: the dense head. transform: normalisation, optional resize, batching.
    """

    def __init__(self, backbone: BackboneWithNeck, levels: list[str], head: DenseHead,
                 transform: SegmentationTransform) -> None:
        super().__init__()
        self.backbone, self.levels, self.head, self.transform = backbone, levels, head, transform

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
                ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        if self.training and targets is None:
            raise ValueError("targets are required in training mode")
        batch, maps, sizes = self.transform(images, targets if self.training else None)
        features = self.backbone(batch)
        logits = self.head([features[name] for name in self.levels])
        logits = F.interpolate(logits, size=batch.shape[-2:], mode="bilinear", align_corners=False)
        if self.training:
            return self.head.losses(logits, maps["mask"], maps.get("mask_b"), maps.get("mix"))
        outputs = []
        for i, (im, (h, w)) in enumerate(zip(images, sizes)):
            out = logits[i:i + 1, :, :h, :w]
            if (h, w) != tuple(im.shape[-2:]):
                out = F.interpolate(out, size=im.shape[-2:], mode="bilinear", align_corners=False)
            outputs.append({"sem_seg": out[0].softmax(dim=0)})
        return outputs
