"""The dense prediction head: every pixel a candidate for detimb's samplers and losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detimb.samplers import SAMPLERS, Candidates, Sampler


class DenseHead(nn.Module):
    """Semantic FPN head (Kirillov et al., Panoptic FPN, CVPR 2019), one 3x3 conv + norm +
    ReLU per pyramid level, each upsampled to the finest level and summed, then a 1x1
    classifier over background + K classes.

    Training: logits are upsampled to the input; each image's pixels become
    ``Candidates`` (labels: the class map, ignored pixels -1; no IoUs) for ``sampler``;
    samplers that rank by loss receive each pixel's cross-entropy, computed without
    gradient. Kept pixels (weight > 0) go to ``loss`` (the ``(N, C)`` / ``(N,)`` contract
    of ``detimb.losses``) with their weights, normalised by the number kept. Soft samplers
    reweigh kept pixels from the logits. Mixup targets add ``mask_b`` and ``mix``: the loss
    is ``L(mask, w * mix) + L(mask_b, w * (1 - mix))``, and samplers see the label with the
    larger weight.

    Args:
        in_channels: channels of every neck level. num_levels: levels used (finest first).
        num_classes: background + K. sampler, loss: from the registries.
        channels: width of the per-level convs (default 128). ignore_index: default 255.
    """

    def __init__(self, in_channels: int, num_levels: int, num_classes: int, sampler: Sampler, loss: nn.Module,
                 channels: int = 128, ignore_index: int = 255) -> None:
        super().__init__()
        if sampler.needs_geometry:
            fitting = ", ".join(n for n in SAMPLERS.names() if not SAMPLERS.get(n).needs_geometry)
            raise ValueError(f"{type(sampler).__name__} ranks by box IoU or ground-truth instance, which pixels do"
                             f" not have; choose from {fitting}")
        self.levels = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                          nn.ReLU(inplace=True))
            for _ in range(num_levels))
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        self.sampler, self.loss = sampler, loss
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.sampling_stats: dict[str, Tensor] = {}

    def forward(self, features: list[Tensor]) -> Tensor:
        """features: (B, in_channels, H_l, W_l) per level, finest first -> (B, C, H_0, W_0) logits."""
        size = features[0].shape[-2:]
        fused = sum(F.interpolate(conv(f), size=size, mode="bilinear", align_corners=False) if i else conv(f)
                    for i, (conv, f) in enumerate(zip(self.levels, features)))
        return self.classifier(fused)

    def _labels(self, mask: Tensor) -> Tensor:
        return torch.where(mask == self.ignore_index, torch.full_like(mask, -1), mask).flatten(1)

    def losses(self, logits: Tensor, masks: Tensor, masks_b: Tensor | None = None,
               mix: Tensor | None = None) -> dict[str, Tensor]:
        """logits (B, C, H, W); masks, masks_b (B, H, W) int64; mix (B, H, W) float."""
        b, c = logits.shape[:2]
        flat = logits.permute(0, 2, 3, 1).reshape(b, -1, c)
        labels_a = self._labels(masks)
        if masks_b is None or mix is None:
            labels_b, weight_a = labels_a, torch.ones_like(labels_a, dtype=flat.dtype)
        else:
            labels_b, weight_a = self._labels(masks_b), mix.flatten(1).to(flat.dtype)
        labels = torch.where(weight_a >= 0.5, labels_a, labels_b)
        losses: list[Tensor | None] = [None] * b
        if self.sampler.needs_losses:
            with torch.no_grad():
                ce = lambda lab: F.cross_entropy(flat.detach().reshape(-1, c), lab.clamp(min=0).reshape(-1),  # noqa: E731
                                                 reduction="none").view(b, -1)
                losses = list(weight_a * ce(labels_a) + (1 - weight_a) * ce(labels_b))
        zeros = torch.zeros(labels.shape[1], dtype=flat.dtype, device=flat.device)
        weights = torch.stack(self.sampler([Candidates(lab, zeros, torch.zeros_like(lab), loss)
                                            for lab, loss in zip(labels, losses)]))
        keep = (weights > 0) & (labels >= 0)
        kept_logits, w = flat[keep], weights[keep]
        if self.sampler.soft:
            w = w * self.sampler.reweight(kept_logits, labels[keep], labels[keep])
        normalizer = float(max(1, int(keep.sum())))
        mix_k = weight_a[keep]
        loss = self.loss(kept_logits, labels_a[keep].clamp(min=0), w * mix_k, normalizer)
        if masks_b is not None and bool((mix_k < 1).any()):
            loss = loss + self.loss(kept_logits, labels_b[keep].clamp(min=0), w * (1 - mix_k), normalizer)
        self._record(labels[keep], b)
        return {"loss_seg": loss}

    @torch.no_grad()
    def _record(self, kept: Tensor, num_images: int) -> None:
        fg = kept[kept > 0]
        counts = torch.bincount(fg, minlength=self.num_classes)[1:].float()
        self.sampling_stats = {
            "kept_per_image": torch.tensor(kept.numel() / max(1, num_images)),
            "fg_frac": torch.tensor(fg.numel() / max(1, kept.numel())),
            "pos_class_frac": counts / counts.sum().clamp(min=1),
        }
