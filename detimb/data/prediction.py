"""One image's predictions as arrays: what the Python API returns and draws."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Prediction:
    """One image's predictions, in that image's pixels.

    boxes: (N, 4) float32 xyxy. scores: (N,) float32. category_ids: (N,) int64, the
    dataset's COCO category ids. names: N class names. masks: (N, H, W) bool for Mask R-CNN,
    else None. class_map: (H, W) int64 COCO category ids (0 background) for semantic
    segmentation, which has no boxes (N = 0).
    """

    boxes: np.ndarray
    scores: np.ndarray
    category_ids: np.ndarray
    names: list[str]
    masks: np.ndarray | None = None
    class_map: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.boxes)
