"""Instance masks of a large scene, each held as its bounding crop, never at scene size.

Mask R-CNN gives every detection a mask over its whole tile. Sliced inference keeps only
the crop around the mask's pixels (compressed as a COCO RLE), so a scene of 10^5
detections costs what their masks cover, not 10^5 scene- or tile-sized rasters. Merged
detections take the union of their members' masks (SAHI's ``greedy_nmm`` ORs the masks of
merged predictions). Outputs are built from the crop without a scene-sized raster too:
the scene's COCO RLE from the crop's columns, and polygons by GDAL's polygonize
(``rasterio.features.shapes``: pixel-edge rings, holes kept, area = the pixel count).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
from pycocotools import mask as mask_utils
from rasterio.features import shapes
from rasterio.transform import Affine
from torch import Tensor


@dataclass(frozen=True)
class CropMask:
    """A binary mask of the scene: its ``rle`` (compressed COCO RLE of the crop, ``size``
    [h, w]) placed with its top-left pixel at scene column ``x0``, row ``y0``."""

    x0: int
    y0: int
    rle: dict[str, Any]

    @property
    def height(self) -> int:
        return int(self.rle["size"][0])

    @property
    def width(self) -> int:
        return int(self.rle["size"][1])

    def bits(self) -> np.ndarray:
        """(h, w) uint8 0/1 pixels of the crop."""
        return mask_utils.decode(self.rle)

    @classmethod
    def from_bits(cls, bits: np.ndarray, x0: int, y0: int) -> CropMask | None:
        """The mask of the nonzero pixels of ``bits`` (h, w) placed at (x0, y0), trimmed to
        their bounds; None when there are none."""
        rows, cols = np.flatnonzero(bits.any(axis=1)), np.flatnonzero(bits.any(axis=0))
        if not len(rows):
            return None
        r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        rle = mask_utils.encode(np.asfortranarray(bits[r0:r1, c0:c1], dtype=np.uint8))
        return cls(x0 + c0, y0 + r0, rle)

    def cut(self, width: int, height: int) -> CropMask | None:
        """The mask's pixels inside a ``width`` x ``height`` scene (None when none are)."""
        if self.x0 >= 0 and self.y0 >= 0 and self.x0 + self.width <= width and self.y0 + self.height <= height:
            return self
        c0, r0 = max(0, -self.x0), max(0, -self.y0)
        c1, r1 = min(self.width, width - self.x0), min(self.height, height - self.y0)
        if c1 <= c0 or r1 <= r0:
            return None
        return CropMask.from_bits(self.bits()[r0:r1, c0:c1], self.x0 + c0, self.y0 + r0)


def masks_from_output(masks: Tensor, threshold: float, x0: int, y0: int, scene: tuple[int, int],
                      scale: tuple[float, float] = (1.0, 1.0)) -> list[CropMask | None]:
    """A model's masks (N, 1, H, W) probabilities over its input -> each thresholded
    (``> threshold``, torchvision's and pycocotools' convention) as a crop in scene pixels:
    the input's pixel (c, r) is the scene's (x0 + c, y0 + r). With ``scale`` (sx, sy) > 1
    (an input read decimated) each crop is resized to the scene's pixels (nearest). Crops
    are cut to the ``scene`` (width, height): a padded tile's or a rounded overview's
    pixels past its edge are not the scene's."""
    if masks.numel() == 0:
        return []
    bits = (masks[:, 0] > threshold).to(torch.uint8).cpu().numpy()
    out: list[CropMask | None] = []
    for k in range(len(bits)):
        crop = CropMask.from_bits(bits[k], 0, 0)
        if crop is None or scale == (1.0, 1.0):
            out.append(None if crop is None else CropMask(x0 + crop.x0, y0 + crop.y0, crop.rle).cut(*scene))
            continue
        sx, sy = scale
        cx0, cy0 = int(np.floor(crop.x0 * sx)), int(np.floor(crop.y0 * sy))
        cx1, cy1 = int(np.ceil((crop.x0 + crop.width) * sx)), int(np.ceil((crop.y0 + crop.height) * sy))
        big = cv2.resize(crop.bits(), (cx1 - cx0, cy1 - cy0), interpolation=cv2.INTER_NEAREST)
        scaled = CropMask.from_bits(big, x0 + cx0, y0 + cy0)
        out.append(None if scaled is None else scaled.cut(*scene))
    return out


def union(masks: list[CropMask]) -> CropMask:
    """The union of ``masks`` (at least one) on the crop that bounds them all."""
    if len(masks) == 1:
        return masks[0]
    x0, y0 = min(m.x0 for m in masks), min(m.y0 for m in masks)
    x1, y1 = max(m.x0 + m.width for m in masks), max(m.y0 + m.height for m in masks)
    bits = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    for m in masks:
        bits[m.y0 - y0:m.y0 - y0 + m.height, m.x0 - x0:m.x0 - x0 + m.width] |= m.bits()
    merged = CropMask.from_bits(bits, x0, y0)
    assert merged is not None  # the members are nonempty
    return merged


def scene_rle(mask: CropMask, height: int, width: int) -> dict[str, Any]:
    """The compressed COCO RLE of ``mask`` over the whole ``height`` x ``width`` scene (as
    ``pycocotools.mask.encode`` of the scene-sized raster gives), built from the crop's
    column runs: no scene-sized array."""
    if mask.x0 < 0 or mask.y0 < 0 or mask.x0 + mask.width > width or mask.y0 + mask.height > height:
        raise ValueError(f"mask crop at ({mask.x0}, {mask.y0}) of {mask.width} x {mask.height} leaves the"
                         f" {width} x {height} scene")
    bits = mask.bits()
    padded = np.zeros((bits.shape[0] + 2, bits.shape[1]), dtype=np.int8)
    padded[1:-1] = bits
    step = np.diff(padded, axis=0)  # +1 where a run of ones opens in a column, -1 where it closes
    col_open, row_open = np.nonzero(step.T == 1)  # column by column, top to bottom: column-major order
    col_close, row_close = np.nonzero(step.T == -1)
    opens = (mask.x0 + col_open) * height + mask.y0 + row_open
    closes = (mask.x0 + col_close) * height + mask.y0 + row_close
    joined = opens[1:] == closes[:-1]  # a run that goes on from a column's bottom to the next one's top
    opens = np.r_[opens[:1], opens[1:][~joined]]
    closes = np.r_[closes[:-1][~joined], closes[-1:]]
    bounds = np.stack([opens, closes], axis=1).reshape(-1)
    counts = np.diff(np.r_[0, bounds, height * width]).tolist()
    if counts[-1] == 0:  # the mask reaches the last pixel: no closing run of zeros (as pycocotools)
        counts.pop()
    rle = mask_utils.frPyObjects({"counts": counts, "size": [height, width]}, height, width)
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def polygons(mask: CropMask, transform: Affine | None = None) -> dict[str, Any]:
    """A GeoJSON MultiPolygon of the mask's pixels: rings along pixel edges (holes kept) in
    scene pixels, or through ``transform`` (scene pixel -> map coordinates)."""
    bits = mask.bits()
    placed = (transform or Affine.identity()) @ Affine.translation(mask.x0, mask.y0)
    parts = [geometry["coordinates"] for geometry, value in shapes(bits, mask=bits.astype(bool), transform=placed)
             if value == 1]
    return {"type": "MultiPolygon", "coordinates": [[[list(p) for p in ring] for ring in part] for part in parts]}
