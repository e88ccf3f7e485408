"""Instance masks from COCO annotations: decoded segmentations, or the box where there is none."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


def polygons_to_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """A (H, W) uint8 mask from COCO polygons, uncompressed RLE or compressed RLE."""
    if isinstance(segmentation, list):
        rles = mask_utils.frPyObjects(segmentation, height, width)
        rle = mask_utils.merge(rles)
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_utils.decode(rle).astype(np.uint8)


def has_segmentation(annotation: dict[str, Any]) -> bool:
    """Whether an annotation carries a (non-empty) polygon or RLE segmentation."""
    seg = annotation.get("segmentation")
    return bool(seg) and (isinstance(seg, dict) or any(len(p) >= 6 for p in seg))


def box_mask(box: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W) uint8: the pixels an xyxy box covers (its edges rounded outwards)."""
    mask = np.zeros((height, width), dtype=np.uint8)
    x0, y0 = max(0, math.floor(box[0])), max(0, math.floor(box[1]))
    x1, y1 = min(width, math.ceil(box[2])), min(height, math.ceil(box[3]))
    mask[y0:y1, x0:x1] = 1
    return mask


def instance_mask(annotation: dict[str, Any], height: int, width: int) -> np.ndarray:
    """(H, W) uint8: the annotation's segmentation, or its box where it has none."""
    if has_segmentation(annotation):
        return polygons_to_mask(annotation["segmentation"], height, width)
    x, y, w, h = annotation["bbox"]
    return box_mask(np.array([x, y, x + w, y + h]), height, width)


def mask_box(mask: np.ndarray) -> np.ndarray:
    """(4,) float32 xyxy of a non-empty (H, W) mask's pixels (right and bottom edges
    exclusive, as mmdetection's ``BitmapMasks.get_bboxes``)."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float32)
