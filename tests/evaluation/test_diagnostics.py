"""Detection confusion matrix and PR curves against counts worked out by hand."""

import numpy as np
import pytest

from detimb.data.coco import coco_api
from detimb.data.label_map import LabelMap
from detimb.evaluation.coco_eval import evaluate_coco, write_reports
from detimb.evaluation.diagnostics import confusion_matrix, row_normalised, write_confusion

CATEGORIES = [{"id": 1, "name": "car"}, {"id": 2, "name": "bus"}]


def gt():
    def ann(i, image, cat, box):
        return {"id": i, "image_id": image, "category_id": cat, "bbox": box, "area": box[2] * box[3], "iscrowd": 0}

    return {"images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 100},
                       {"id": 2, "file_name": "b.png", "width": 100, "height": 100}],
            "annotations": [ann(1, 1, 1, [0, 0, 10, 10]), ann(2, 1, 2, [20, 20, 10, 10]),
                            ann(3, 2, 1, [0, 0, 10, 10])],
            "categories": CATEGORIES}


DETECTIONS = [
    {"image_id": 1, "category_id": 2, "bbox": [0, 0, 10, 10], "score": 0.9},   # the car called a bus
    {"image_id": 1, "category_id": 2, "bbox": [20, 20, 10, 10], "score": 0.8},  # the bus, right
    {"image_id": 1, "category_id": 2, "bbox": [21, 20, 10, 10], "score": 0.7},  # the bus again: a duplicate
    {"image_id": 1, "category_id": 1, "bbox": [50, 50, 5, 5], "score": 0.6},    # nothing there: background
    {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.1},    # below the score threshold
]  # and image 2's car is missed


def test_confusion_matrix_by_hand(tmp_path):
    cm = confusion_matrix(gt(), DETECTIONS, [1, 2], iou=0.5, score_threshold=0.25)
    # rows: true car, true bus, background; columns: predicted car, bus, background
    assert cm.tolist() == [[0, 1, 1],
                           [0, 1, 0],
                           [1, 1, 0]]
    assert row_normalised(cm).tolist() == [[0, 0.5, 0.5], [0, 1, 0], [0.5, 0.5, 0]]
    write_confusion(tmp_path, cm, ["car", "bus"], 0.5, 0.25)
    rows = (tmp_path / "confusion_matrix.csv").read_text().splitlines()
    assert rows[0] == "ground_truth \\ predicted,car,bus,background" and rows[3] == "background,1,1,0"
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 0
    assert (tmp_path / "confusion_matrix_normalized.csv").read_text().splitlines()[1] == "car,0.0,0.5,0.5"


def test_pr_curve_by_hand(tmp_path):
    # cars: 2 ground truths; detections TP (0.9), FP (0.8), TP (0.7): recall 1/2 at precision 1, then
    # recall 1 at precision 2/3; COCO interpolates precision as the best to the right.
    data = {**gt(), "annotations": [a for a in gt()["annotations"] if a["category_id"] == 1]}
    dets = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},
            {"image_id": 1, "category_id": 1, "bbox": [60, 60, 10, 10], "score": 0.8},
            {"image_id": 2, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.7}]
    report = evaluate_coco(coco_api(data), dets, "bbox", LabelMap.from_categories(CATEGORIES))
    curve = np.array(report["pr_curves"]["precision"]["0.5"][1])
    assert curve[:51] == pytest.approx(1.0) and curve[51:] == pytest.approx(2 / 3)
    assert report["pr_curves"]["recall"][50] == pytest.approx(0.5)
    write_reports(tmp_path, {"bbox": report})
    lines = (tmp_path / "pr_curves.csv").read_text().splitlines()
    assert lines[0] == "iou,category_id,name,group,recall,precision" and len(lines) == 1 + 2 * 101 * 2
    assert (tmp_path / "pr_curves.png").stat().st_size > 0
    assert "pr_curves" not in (tmp_path / "eval.json").read_text()


def test_error_breakdown_by_hand(tmp_path):
    from detimb.evaluation.error_analysis import error_breakdown, write_error_breakdown

    cats = [{"id": 1, "name": "car", "supercategory": "vehicle"}, {"id": 2, "name": "bus", "supercategory": "vehicle"},
            {"id": 3, "name": "dog", "supercategory": "animal"}]
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [50, 50, 10, 10], "area": 100, "iscrowd": 0},
            {"id": 3, "image_id": 1, "category_id": 3, "bbox": [80, 80, 10, 10], "area": 100, "iscrowd": 0}]
    data = {"images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 100}], "annotations": anns,
            "categories": cats}
    # four car detections, best first: on nothing (background), on the dog (another class), on the
    # bus (a similar class), and on the car at IoU 1/3 (a localisation error)
    dets = [{"image_id": 1, "category_id": 1, "bbox": [30, 30, 5, 5], "score": 0.9},
            {"image_id": 1, "category_id": 1, "bbox": [80, 80, 10, 10], "score": 0.8},
            {"image_id": 1, "category_id": 1, "bbox": [50, 50, 10, 10], "score": 0.7},
            {"image_id": 1, "category_id": 1, "bbox": [5, 0, 10, 10], "score": 0.6}]
    car = next(r for r in error_breakdown(data, dets) if r["category_id"] == 1)
    # the car is found only at IoU 0.1, 4th: precision 1/4; forgiving the bus 1/3, the dog 1/2, background 1
    assert car["C75"] == 0.0 and car["C50"] == 0.0
    assert car["Loc"] == pytest.approx(0.25) and car["Sim"] == pytest.approx(1 / 3)
    assert car["Oth"] == pytest.approx(0.5) and car["BG"] == pytest.approx(1.0) and car["FN"] == 1.0
    assert car["localisation"] == pytest.approx(0.25) and car["similar"] == pytest.approx(1 / 12)
    assert car["other"] == pytest.approx(1 / 6) and car["background"] == pytest.approx(0.5)
    assert car["missed"] == pytest.approx(0.0)
    bus = next(r for r in error_breakdown(data, dets) if r["category_id"] == 2)
    assert bus["C50"] == 0.0 and bus["missed"] == 1.0  # no bus detections: all of it missed
    per_class = [{"category_id": c["id"], "name": c["name"], "group": "rare"} for c in cats]
    write_error_breakdown(tmp_path, error_breakdown(data, dets), per_class)
    assert (tmp_path / "error_breakdown.csv").read_text().splitlines()[1].startswith("1,car,rare,0.0,0.0,0.25")
    assert (tmp_path / "error_breakdown.png").stat().st_size > 0
