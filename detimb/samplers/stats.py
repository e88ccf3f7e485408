"""What a sampler chose, summarised for the training log."""

from __future__ import annotations

import torch
from torch import Tensor


def delta_iou(pred: Tensor, target: Tensor, weights: tuple[float, float, float, float]) -> Tensor:
    """IoU of the boxes that two sets of encoded deltas decode to from the same anchor.

    IoU is unchanged by translation and by scaling each axis, so decoding both from a unit
    anchor gives the IoU that decoding from the real anchor would. pred, target: (N, 4).
    """
    wx, wy, ww, wh = weights
    clamp = 4.135  # log(1000 / 16), torchvision's BoxCoder clamp

    def corners(d: Tensor) -> Tensor:
        cx, cy = d[:, 0] / wx, d[:, 1] / wy
        w, h = torch.exp((d[:, 2] / ww).clamp(max=clamp)), torch.exp((d[:, 3] / wh).clamp(max=clamp))
        return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=1)

    a, b = corners(pred.float()), corners(target.float())
    lt, rb = torch.maximum(a[:, :2], b[:, :2]), torch.minimum(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    union = (a[:, 2:] - a[:, :2]).prod(dim=1) + (b[:, 2:] - b[:, :2]).prod(dim=1) - inter
    return inter / union.clamp(min=1e-12)


@torch.no_grad()
def sampling_stats(lab: Tensor, iou: Tensor, num_images: int, num_classes: int | None = None) -> dict[str, Tensor]:
    """From the labels and IoUs of the kept candidates of ``num_images`` images: kept
    positives and negatives per image, the mean IoU of kept negatives, and (with
    ``num_classes``) the share of each foreground class among kept positives (index c - 1)."""
    # masks and sums only: no host round trip, the numbers are read back on log steps
    positive, negative = (lab > 0).float(), (lab == 0).float()
    negatives = negative.sum()
    stats = {
        "pos_per_image": positive.sum() / max(1, num_images),
        "neg_per_image": negatives / max(1, num_images),
        "neg_mean_iou": (iou.float() * negative).sum() / negatives.clamp(min=1),  # 0 without negatives
    }
    if num_classes is not None:
        counts = torch.zeros(num_classes + 1, dtype=torch.float32, device=lab.device)
        counts = counts.index_add(0, lab.clamp(min=0, max=num_classes), positive)[1:]
        stats["pos_class_frac"] = counts / counts.sum().clamp(min=1)
    return stats
