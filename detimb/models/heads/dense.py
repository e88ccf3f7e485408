"""The dense prediction head: every pixel a candidate for detimb's samplers and losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detimb.models.heads.batch import Mixup, Predictions, Targets
from detimb.models.heads.objective import HeadObjective
from detimb.samplers import SAMPLERS


class DenseHead(nn.Module):
    """Semantic FPN head (Kirillov et al., Panoptic FPN, CVPR 2019), one 3x3 conv + norm +
    ReLU per pyramid level, each upsampled to the finest level and summed, then a 1x1
    classifier over background + K classes.

    Training: logits are upsampled to the input and every pixel becomes a candidate of
    ``objective`` (labels: the class map, ignored pixels -1; no boxes or IoUs), the same
    objective the detection heads use: samplers that rank by loss see each pixel's loss
    under the configured loss, soft samplers reweigh the kept pixels, and the normaliser
    is the sampler's (kept pixels, or foreground pixels for the focal sampler). Mixup
    targets add ``mask_b`` and ``mix``: the loss is ``L(mask, w * mix) + L(mask_b, w *
    (1 - mix))``, and samplers see the label with the larger weight.

    Args:
        in_channels: channels of every neck level. num_levels: levels used (finest first).
        num_classes: background + K. objective: its sampler must not need box geometry.
        channels: width of the per-level convs (default 128). ignore_index: default 255.
    """

    def __init__(self, in_channels: int, num_levels: int, num_classes: int, objective: HeadObjective,
                 channels: int = 128, ignore_index: int = 255) -> None:
        super().__init__()
        if objective.sampler.needs.geometry:
            fitting = ", ".join(n for n in SAMPLERS.names() if not SAMPLERS.get(n).needs.geometry)
            raise ValueError(f"{type(objective.sampler).__name__} ranks by box IoU or ground-truth instance, which"
                             f" pixels do not have; choose from {fitting}")
        self.levels = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                          nn.ReLU(inplace=True))
            for _ in range(num_levels))
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        self.objective = objective
        self.num_classes, self.ignore_index = num_classes, ignore_index

    def forward(self, features: list[Tensor]) -> Tensor:
        """features: (B, in_channels, H_l, W_l) per level, finest first -> (B, C, H_0, W_0) logits."""
        size = features[0].shape[-2:]
        fused = sum(F.interpolate(conv(f), size=size, mode="bilinear", align_corners=False) if i else conv(f)
                    for i, (conv, f) in enumerate(zip(self.levels, features)))
        return self.classifier(fused)

    def _labels(self, mask: Tensor) -> Tensor:
        return torch.where(mask == self.ignore_index, torch.full_like(mask, -1), mask).flatten()

    def losses(self, logits: Tensor, masks: Tensor, masks_b: Tensor | None = None,
               mix: Tensor | None = None) -> dict[str, Tensor]:
        """logits (B, C, H, W); masks, masks_b (B, H, W) int64; mix (B, H, W) float."""
        b, c = logits.shape[:2]
        flat = logits.permute(0, 2, 3, 1).reshape(-1, c)
        labels = self._labels(masks)
        mixup = None
        if masks_b is not None and mix is not None:
            mixup = Mixup(labels, self._labels(masks_b), mix.flatten().to(flat.dtype))
            labels = torch.where(mixup.mix >= 0.5, mixup.labels_a, mixup.labels_b)
        pixels = masks[0].numel()
        image = torch.arange(b, device=flat.device).repeat_interleave(pixels)
        zeros = torch.zeros(len(labels), dtype=flat.dtype, device=flat.device)
        targets = Targets(labels, zeros, torch.zeros_like(labels), image, b, mixup=mixup)
        return self.objective(targets, Predictions(flat))
