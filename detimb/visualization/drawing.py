"""Predictions drawn on images: boxes and masks with class name and score, one stable
colour per class; semantic class maps as a colour overlay with a legend."""

from __future__ import annotations

import colorsys

import cv2
import numpy as np


def class_color(category_id: int) -> tuple[int, int, int]:
    """An RGB colour that depends only on the category id (golden-ratio hue steps, so
    neighbouring ids differ), the same in every picture of every run."""
    hue = (int(category_id) * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def _label(canvas: np.ndarray, text: str, x: int, y: int, color: tuple[int, int, int]) -> None:
    scale = max(0.35, min(canvas.shape[:2]) / 900)
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    y = max(y, h + base)
    cv2.rectangle(canvas, (x, y - h - base), (x + w, y), color, -1)
    cv2.putText(canvas, text, (x, y - base), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)


def draw_detections(image: np.ndarray, boxes: np.ndarray, category_ids: np.ndarray, names: list[str],
                    scores: np.ndarray | None = None, masks: np.ndarray | None = None,
                    max_draw: int | None = None) -> np.ndarray:
    """A copy of ``image`` (H, W, 3 uint8 RGB) with ``boxes`` (N, 4 xyxy), their class names
    and scores, and ``masks`` (N, H, W bool) blended in; the ``max_draw`` highest scores only."""
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
        thickness = max(1, min(canvas.shape[:2]) // 300)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), color, thickness)
        text = names[k] if scores is None else f"{names[k]} {float(scores[k]):.2f}"
        _label(canvas, text, x0, y0, color)
    return canvas


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
        _label(canvas, names.get(c, str(c)), 4, y + 14, class_color(c))
        y += 18
    return canvas


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Two pictures of the same image next to each other (ground truth | prediction)."""
    gap = np.full((left.shape[0], 4, 3), 255, dtype=np.uint8)
    return np.concatenate([left, gap, right], axis=1)
