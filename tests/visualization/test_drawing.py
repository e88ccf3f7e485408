"""Drawn labels sized to their boxes, the labels setting, titled panels, and batch mosaics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detimb.data.label_map import LabelMap
from detimb.errors import InputError
from detimb.visualization import LabelText, draw_detections
from detimb.visualization.batches import batch_mosaic
from detimb.visualization.draw import label_text
from detimb.visualization.drawing import LABEL_SHARE, mosaic, titled


def covered_inside(picture: np.ndarray, box: tuple[int, int, int, int], margin: int = 4) -> float:
    """The share of a box's interior (its outline excluded) that drawing changed on black."""
    x0, y0, x1, y1 = box
    inner = picture[y0 + margin:y1 - margin + 1, x0 + margin:x1 - margin + 1]
    return float(inner.any(axis=2).sum()) / ((x1 - x0) * (y1 - y0))


@pytest.mark.parametrize("side", [12, 24, 40, 64, 120])
@pytest.mark.parametrize("labels", list(LabelText))
def test_a_label_covers_at_most_its_share_of_the_box(side, labels):
    """A 128 px demo image and a 2300 px scene: the label of a box of any size stays under
    LABEL_SHARE of it (a label drawn above the box at the image's font size covered a third
    of a small object, or its neighbours)."""
    for size in (128, 2300):
        canvas = np.zeros((size, size, 3), dtype=np.uint8)
        box = (10, 10, 10 + side, 10 + side)
        drawn = draw_detections(canvas, np.array([box], np.float32), np.array([1]), ["Tree"], np.array([0.97]),
                                labels=labels)
        share = covered_inside(drawn, box)
        assert share <= LABEL_SHARE
        if labels is LabelText.NONE or side <= 12:  # no label; or no readable one fits
            assert share == 0.0
        elif side >= 64:
            assert share > 0.005  # a large box keeps its label
        assert drawn[:6].max() == 0 and drawn[:, :6].max() == 0  # nothing beyond the outline


def test_the_score_is_dropped_before_the_label():
    canvas = np.zeros((128, 128, 3), dtype=np.uint8)
    with_score = draw_detections(canvas, np.array([[0, 0, 110, 110]], np.float32), np.array([1]), ["Tree"],
                                 np.array([0.97]), labels=LabelText.SCORE)
    class_only = draw_detections(canvas, np.array([[0, 0, 110, 110]], np.float32), np.array([1]), ["Tree"],
                                 np.array([0.97]), labels=LabelText.CLASS)
    assert covered_inside(with_score, (0, 0, 110, 110)) > covered_inside(class_only, (0, 0, 110, 110)) > 0


def test_labels_setting_is_checked():
    assert label_text("class") is LabelText.CLASS
    with pytest.raises(InputError, match="labels must be one of none, class, score, got 'all'"):
        label_text("all")


def test_titled_panels_and_mosaics_keep_every_picture():
    a, b = np.full((20, 30, 3), 7, np.uint8), np.full((10, 10, 3), 9, np.uint8)
    grid = mosaic([a, b, a], columns=2)
    assert grid.shape == (2 * 20 + 4, 2 * 30 + 4, 3)
    assert (grid[:20, :30] == 7).all() and (grid[:10, 34:44] == 9).all() and (grid[24:44, :30] == 7).all()
    panel = titled(a, "ground truth (3)")
    assert panel.shape[1] == 30 and panel.shape[0] > 20 and (panel[-20:] == 7).all()
    assert panel[: panel.shape[0] - 20].min() < 128  # the title's dark text on the white strip


def test_batch_mosaic_draws_boxes_and_class_maps():
    label_map = LabelMap((5, 9), ("square", "circle"))
    image = torch.zeros(3, 40, 40, dtype=torch.uint8)
    target = {"boxes": torch.tensor([[5.0, 5.0, 35.0, 35.0]]), "labels": torch.tensor([2]),
              "image_id": torch.tensor(3)}
    seg = {"mask": torch.zeros(40, 40, dtype=torch.int64), "image_id": torch.tensor(4)}
    seg["mask"][10:20, 10:20] = 1
    seg["mask"][0, 0] = 255  # unlabelled: not drawn
    grid = batch_mosaic([image, image], [target, seg], label_map)
    assert grid.shape[1] == 2 * 40 + 4 and grid.shape[0] > 40
    assert grid[-40:, :40].any() and grid[-40:, 44:].any()
