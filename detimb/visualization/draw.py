"""``draw``: one image's ``Prediction`` drawn on it (the Python API's picture)."""

from __future__ import annotations

import numpy as np

from detimb.data.pixels import load_image
from detimb.data.prediction import Prediction
from detimb.visualization.drawing import draw_class_map, draw_detections


def draw(image: object, prediction: Prediction, *, color: str = "RGB", max_draw: int | None = None,
         names: dict[int, str] | None = None) -> np.ndarray:
    """``image`` (a path, a PIL image or an (H, W, 3) uint8 array) with ``prediction`` drawn on
    it, (H, W, 3) uint8 RGB: boxes and masks with class name and score, or a semantic class map
    as an overlay with a legend (``names``: category id -> name for the legend; default the ids)."""
    pixels = load_image(image, color)
    if prediction.class_map is not None:
        return draw_class_map(pixels, prediction.class_map, names or {})
    return draw_detections(pixels, prediction.boxes, prediction.category_ids, prediction.names, prediction.scores,
                           prediction.masks, max_draw)
