"""torchvision's GeneralizedRCNNTransform, with its resize made an explicit choice."""

from __future__ import annotations

from typing import Any

from torch import Tensor
from torchvision.models.detection.transform import GeneralizedRCNNTransform


class DetectionTransform(GeneralizedRCNNTransform):
    """Normalise, optionally resize, and batch images (padding to ``size_divisible``).

    torchvision always resizes so the short side is ``min_size`` (capped by ``max_size``).
    With ``resize=False`` images keep their size, in training and inference alike, and
    predictions come back in the input's pixels either way. Config:
    ``model.transform: {resize, min_size, max_size, image_mean, image_std, size_divisible}``.
    """

    def __init__(self, resize: bool, min_size: int, max_size: int, image_mean: list[float],
                 image_std: list[float], size_divisible: int = 32) -> None:
        super().__init__(min_size, max_size, list(image_mean), list(image_std), size_divisible=size_divisible)
        self.resize_enabled = resize

    def resize(self, image: Tensor, target: dict[str, Any] | None = None) -> tuple[Tensor, dict[str, Any] | None]:
        if not self.resize_enabled:
            return image, target
        return super().resize(image, target)
