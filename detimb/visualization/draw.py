"""``draw``: one image's ``Prediction`` drawn on it (the Python API's picture)."""

from __future__ import annotations

import numpy as np

from detimb.data.pixels import load_image
from detimb.data.prediction import Prediction
from detimb.errors import InputError
from detimb.visualization.drawing import LabelText, draw_class_map, draw_detections


def label_text(labels: str | LabelText) -> LabelText:
    """``labels`` as a ``LabelText`` ('none', 'class' or 'score'), or a named error."""
    if isinstance(labels, LabelText):
        return labels
    try:
        return LabelText(labels)
    except ValueError as err:
        raise InputError(f"labels must be one of {', '.join(t.value for t in LabelText)}, got {labels!r}") from err


def draw(image: object, prediction: Prediction, *, color: str = "RGB", max_draw: int | None = None,
         names: dict[int, str] | None = None, labels: str | LabelText = "score") -> np.ndarray:
    """``image`` (a path, a PIL image or an (H, W, 3) uint8 array) with ``prediction`` drawn on
    it, (H, W, 3) uint8 RGB: boxes and masks labelled as ``labels`` says ('none', 'class' or
    'score': class and score; each label sized to its box), or a semantic class map as an
    overlay with a legend (``names``: category id -> name for the legend; default the ids)."""
    pixels = load_image(image, color)
    if prediction.class_map is not None:
        return draw_class_map(pixels, prediction.class_map, names or {})
    return draw_detections(pixels, prediction.boxes, prediction.category_ids, prediction.names, prediction.scores,
                           prediction.masks, max_draw, label_text(labels))
