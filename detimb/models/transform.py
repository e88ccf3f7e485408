"""torchvision's GeneralizedRCNNTransform with its resize made an explicit choice, and its
counterpart for semantic segmentation."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform


def float_image(image: Tensor) -> Tensor:
    """The float image a model normalises: an 8-bit one (a loader's uint8 item: a quarter of
    float32's bytes between processes and to the device) divided by 255 here, on the model's
    device, with ``detimb.data.pixels.to_chw_tensor``'s arithmetic (identical values); a
    float one as it is."""
    if image.dtype == torch.uint8:
        return image.float().div(255.0)
    return image


class DetectionTransform(GeneralizedRCNNTransform):
    """Normalise, optionally resize, and batch images (padding to ``size_divisible``).

    torchvision always resizes so the short side is ``min_size`` (capped by ``max_size``).
    With ``resize=False`` images keep their size, in training and inference alike, and
    predictions come back in the input's pixels either way. Config:
    ``model.transform: {resize, min_size, max_size, image_mean, image_std, size_divisible}``;
    ``fixed_size`` (SSD's) resizes to exactly (h, w). Images may be float in [0, 1] or uint8
    (``float_image``).
    """

    def __init__(self, resize: bool, min_size: int, max_size: int, image_mean: list[float],
                 image_std: list[float], size_divisible: int = 32, fixed_size: tuple[int, int] | None = None
                 ) -> None:
        super().__init__(min_size, max_size, list(image_mean), list(image_std), size_divisible=size_divisible,
                         fixed_size=fixed_size)
        self.resize_enabled = resize

    def normalize(self, image: Tensor) -> Tensor:
        return super().normalize(float_image(image))

    def resize(self, image: Tensor, target: dict[str, Any] | None = None) -> tuple[Tensor, dict[str, Any] | None]:
        if not self.resize_enabled:
            return image, target
        return super().resize(image, target)


class SegmentationTransform(nn.Module):
    """Normalise, optionally resize, and batch images with their class maps.

    Resizing (``resize=True``) scales each image so its short side is ``min_size``, the
    long side at most ``max_size`` (bilinear for images, nearest for maps), as the
    detection transform does; predictions are resized back to each input's size. Batches
    are padded to a multiple of ``size_divisible``: images with 0, maps with ``ignore_index``.
    """

    def __init__(self, resize: bool, min_size: int, max_size: int, image_mean: list[float],
                 image_std: list[float], size_divisible: int = 32, ignore_index: int = 255) -> None:
        super().__init__()
        self.resize_enabled, self.min_size, self.max_size = resize, min_size, max_size
        self.register_buffer("mean", torch.tensor(image_mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(image_std).view(-1, 1, 1), persistent=False)
        self.size_divisible, self.ignore_index = size_divisible, ignore_index

    def scaled_size(self, h: int, w: int) -> tuple[int, int]:
        if not self.resize_enabled:
            return h, w
        scale = min(self.min_size / min(h, w), self.max_size / max(h, w))
        return max(1, round(h * scale)), max(1, round(w * scale))

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
                ) -> tuple[Tensor, dict[str, Tensor], list[tuple[int, int]]]:
        """-> (images (B, 3, H, W), stacked target maps (B, H, W) by key, each image's size in the batch)."""
        sizes = [self.scaled_size(*im.shape[-2:]) for im in images]
        d = self.size_divisible
        height = -(-max(s[0] for s in sizes) // d) * d
        width = -(-max(s[1] for s in sizes) // d) * d
        batch = self.mean.new_zeros((len(images), images[0].shape[0], height, width))
        maps: dict[str, Tensor] = {}
        keys = [k for k in ("mask", "mask_b", "mix") if targets and k in targets[0]]
        for key in keys:
            fill = 1.0 if key == "mix" else self.ignore_index
            maps[key] = torch.full((len(images), height, width), fill, device=images[0].device,
                                   dtype=targets[0][key].dtype)  # type: ignore[index]
        for i, (im, (h, w)) in enumerate(zip(images, sizes)):
            x = (float_image(im) - self.mean) / self.std
            if (h, w) != tuple(im.shape[-2:]):
                x = F.interpolate(x[None], size=(h, w), mode="bilinear", align_corners=False)[0]
            batch[i, :, :h, :w] = x
            for key in keys:
                m = targets[i][key]  # type: ignore[index]
                if (h, w) != tuple(m.shape[-2:]):
                    m = F.interpolate(m[None, None].float(), size=(h, w), mode="nearest")[0, 0].to(m.dtype)
                maps[key][i, :h, :w] = m
        return batch, maps, sizes
