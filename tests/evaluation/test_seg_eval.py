"""Dice, IoU, region Dice and the confusion matrix against hand-counted maps."""

import json

import numpy as np
import pytest

from detimb.data.label_map import LabelMap
from detimb.evaluation.seg_eval import confusion, region_dice, segmentation_report, write_segmentation_reports

LABELS = LabelMap((1, 2), ("a", "b"))

# truth / prediction, 3 x 4 pixels, 255 = ignored
TRUTH = np.array([[0, 0, 1, 1],
                  [0, 1, 1, 255],
                  [2, 2, 0, 0]])
PRED = np.array([[0, 1, 1, 1],
                 [0, 0, 1, 2],
                 [2, 0, 0, 0]])


def test_confusion_counts_by_hand():
    cm = confusion(PRED, TRUTH, 3, 255)
    # rows truth, columns prediction; the ignored pixel is not counted
    assert cm.tolist() == [[4, 1, 0],
                           [1, 3, 0],
                           [1, 0, 1]]


def test_per_class_dice_and_iou_by_hand():
    report = segmentation_report({7: confusion(PRED, TRUTH, 3, 255)}, LABELS)
    by_name = {e["name"]: e for e in report["per_class"]}
    # class a: truth 4 px, prediction 4 px, overlap 3 -> Dice 6/8, IoU 3/5
    assert by_name["a"]["dice"] == pytest.approx(0.75) and by_name["a"]["iou"] == pytest.approx(0.6)
    # class b: truth 2, prediction 1, overlap 1 -> Dice 2/3, IoU 1/2
    assert by_name["b"]["dice"] == pytest.approx(2 / 3) and by_name["b"]["iou"] == pytest.approx(0.5)
    # background: truth 5, prediction 6, overlap 4 -> Dice 8/11, IoU 4/7
    assert by_name["background"]["dice"] == pytest.approx(8 / 11)
    assert report["summary"]["mDice"] == pytest.approx((0.75 + 2 / 3) / 2)


def test_both_empty_counts_as_one_and_global_pools_pixels():
    empty_truth = np.zeros((2, 2), dtype=np.int64)
    empty_pred = np.zeros((2, 2), dtype=np.int64)
    missed = np.array([[2, 2], [0, 0]])  # class b present, predicted as background
    confusions = {1: confusion(empty_pred, empty_truth, 3, 255), 2: confusion(empty_pred, missed, 3, 255)}
    report = segmentation_report(confusions, LABELS)
    b = report["per_class"][2]
    assert b["dice"] == pytest.approx(0.5)  # image 1: both empty = 1; image 2: missed = 0
    assert b["dice_global"] == pytest.approx(0.0)  # pooled: 2 truth pixels, none found
    a = report["per_class"][1]
    assert a["dice"] == pytest.approx(1.0) and a["val_images"] == 0


def test_region_dice_unions_the_classes():
    cm = confusion(PRED, TRUTH, 3, 255)
    # region {a, b}: truth 6 px, prediction 5 px, both in the region 4 (3 a->a, 1 b->b)
    assert region_dice(cm, [1, 2]) == pytest.approx(8 / 11)
    report = segmentation_report({0: cm}, LABELS, regions={"fg": [1, 2], "only_b": [2]})
    assert report["regions"]["fg"] == pytest.approx(8 / 11)
    assert report["summary"]["region_dice/only_b"] == pytest.approx(2 / 3)


def test_frequency_groups_and_files(tmp_path):
    freq = {1: {"images": 300, "instances": 900}, 2: {"images": 4, "instances": 4}}
    report = segmentation_report({0: confusion(PRED, TRUTH, 3, 255)}, LABELS, freq, (10, 100))
    assert report["summary"]["Dicer"] == pytest.approx(2 / 3) and report["summary"]["Dicef"] == pytest.approx(0.75)
    write_segmentation_reports(tmp_path, report)
    for name in ("eval.json", "per_class_dice.csv", "per_class_dice.png", "confusion_matrix.csv",
                 "confusion_matrix_normalized.csv", "confusion_matrix.png"):
        assert (tmp_path / name).stat().st_size > 0
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["semantic"]["confusion"] == [[4, 1, 0], [1, 3, 0], [1, 0, 1]]
    rows = (tmp_path / "confusion_matrix_normalized.csv").read_text().splitlines()
    assert rows[2].split(",")[1:] == ["0.2500", "0.7500", "0.0000"]
