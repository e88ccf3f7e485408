"""Predictions drawn on images: boxes and masks labelled with class name and score, sized
to each box, one stable colour per class; semantic class maps as a colour overlay with a
legend; titled panels and mosaics."""

from __future__ import annotations

import colorsys
import enum

import cv2
import numpy as np


def class_color(category_id: int) -> tuple[int, int, int]:
    """An RGB colour that depends only on the category id (golden-ratio hue steps, so
    neighbouring ids differ), the same in every picture of every run."""
    hue = (int(category_id) * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


class LabelText(enum.Enum):
    """What a drawn box is labelled with: ``NONE``, its ``CLASS`` name, or class and ``SCORE``."""

    NONE = "none"
    CLASS = "class"
    SCORE = "score"


LABEL_SHARE = 0.25  # the most of its box's area a label may cover
MIN_FONT = 0.3  # OpenCV's font scale below which text is unreadable (about 7 px high)
FONT = cv2.FONT_HERSHEY_SIMPLEX


def _image_font(canvas: np.ndarray) -> float:
    return max(MIN_FONT * 1.5, min(canvas.shape[:2]) / 900)


def fit_label(texts: list[str], box_w: float, box_h: float, largest: float) -> tuple[str, float] | None:
    """The first of ``texts`` (longest first) and the largest font scale, from ``largest``
    down to ``MIN_FONT``, whose label is no wider than its box and covers at most
    ``LABEL_SHARE`` of it; None when none fits (the box is drawn without a label)."""
    for text in texts:
        scale = largest
        while scale >= MIN_FONT:
            (w, h), base = cv2.getTextSize(text, FONT, scale, 1)
            if w <= box_w and w * (h + base) <= LABEL_SHARE * box_w * box_h:
                return text, scale
            scale *= 0.85
    return None


def _box_label(canvas: np.ndarray, texts: list[str], box: tuple[int, int, int, int],
               color: tuple[int, int, int]) -> None:
    """A label inside the box's top-left corner, sized to the box (it covers nothing else)."""
    x0, y0, x1, y1 = box
    fitted = fit_label(texts, x1 - x0, y1 - y0, _image_font(canvas))
    if fitted is None:
        return
    text, scale = fitted
    (w, h), base = cv2.getTextSize(text, FONT, scale, 1)
    cv2.rectangle(canvas, (x0, y0), (x0 + w - 1, y0 + h + base - 1), color, -1)
    cv2.putText(canvas, text, (x0, y0 + h), FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)


def _legend_entry(canvas: np.ndarray, text: str, x: int, y: int, color: tuple[int, int, int]) -> None:
    scale = _image_font(canvas)
    (w, h), base = cv2.getTextSize(text, FONT, scale, 1)
    y = max(y, h + base)
    cv2.rectangle(canvas, (x, y - h - base), (x + w, y), color, -1)
    cv2.putText(canvas, text, (x, y - base), FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)


def _texts(name: str, score: float | None, labels: LabelText) -> list[str]:
    if labels is LabelText.NONE:
        return []
    if labels is LabelText.SCORE and score is not None:
        return [f"{name} {score:.2f}", name]
    return [name]


def draw_detections(image: np.ndarray, boxes: np.ndarray, category_ids: np.ndarray, names: list[str],
                    scores: np.ndarray | None = None, masks: np.ndarray | None = None,
                    max_draw: int | None = None, labels: LabelText = LabelText.SCORE) -> np.ndarray:
    """A copy of ``image`` (H, W, 3 uint8 RGB) with ``boxes`` (N, 4 xyxy) and ``masks``
    (N, H, W bool) blended in, the ``max_draw`` highest scores only. Each box is labelled as
    ``labels`` says, inside its top-left corner, the font sized to the box so the label
    covers at most ``LABEL_SHARE`` of it (the score is dropped, then the label, where even
    the smallest readable font would cover more); lines are thinner on small boxes."""
    canvas = np.ascontiguousarray(image.copy())
    order = np.argsort(-scores) if scores is not None else np.arange(len(boxes))
    if max_draw is not None:
        order = order[:max_draw]
    for k in order[::-1]:  # highest score drawn last, on top
        color = class_color(int(category_ids[k]))
        if masks is not None:
            m = masks[k].astype(bool)
            canvas[m] = (0.5 * canvas[m] + 0.5 * np.array(color)).astype(np.uint8)
        x0, y0, x1, y1 = (int(round(float(v))) for v in boxes[k])
        thickness = max(1, min(min(canvas.shape[:2]) // 300, min(x1 - x0, y1 - y0) // 20))
        cv2.rectangle(canvas, (x0, y0), (x1, y1), color, thickness)
        _box_label(canvas, _texts(names[k], None if scores is None else float(scores[k]), labels),
                   (x0 + thickness, y0 + thickness, x1 - thickness, y1 - thickness), color)
    return canvas


def titled(picture: np.ndarray, title: str) -> np.ndarray:
    """``picture`` under a white strip holding ``title`` (its font shrunk to the width)."""
    scale = max(MIN_FONT * 1.5, min(picture.shape[1] / 500, 1.0))
    while scale > MIN_FONT and cv2.getTextSize(title, FONT, scale, 1)[0][0] > picture.shape[1] - 6:
        scale *= 0.9
    (w, h), base = cv2.getTextSize(title, FONT, scale, 1)
    strip = np.full((h + base + 6, picture.shape[1], 3), 255, dtype=np.uint8)
    cv2.putText(strip, title, (3, h + 3), FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, picture], axis=0)


def draw_class_map(image: np.ndarray, class_map: np.ndarray, names: dict[int, str], alpha: float = 0.5
                   ) -> np.ndarray:
    """``image`` with ``class_map`` (H, W category ids, 0 background) as a colour overlay and
    a legend of the classes present."""
    canvas = np.ascontiguousarray(image.copy())
    present = [int(c) for c in np.unique(class_map) if c != 0]
    for c in present:
        m = class_map == c
        canvas[m] = ((1 - alpha) * canvas[m] + alpha * np.array(class_color(c))).astype(np.uint8)
    y = 4
    for c in present:
        _legend_entry(canvas, names.get(c, str(c)), 4, y + 14, class_color(c))
        y += 18
    return canvas


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Two pictures next to each other (ground truth | prediction), the shorter padded white below."""
    return mosaic([left, right], columns=2)


def mosaic(pictures: list[np.ndarray], columns: int = 4) -> np.ndarray:
    """Pictures in a grid of ``columns``, each cell the size of the largest, white between."""
    h = max(p.shape[0] for p in pictures)
    w = max(p.shape[1] for p in pictures)
    rows = -(-len(pictures) // columns)
    cols = min(columns, len(pictures))
    grid = np.full((rows * (h + 4) - 4, cols * (w + 4) - 4, 3), 255, dtype=np.uint8)
    for i, p in enumerate(pictures):
        r, c = divmod(i, columns)
        grid[r * (h + 4):r * (h + 4) + p.shape[0], c * (w + 4):c * (w + 4) + p.shape[1]] = p
    return grid
