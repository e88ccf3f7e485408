"""LVIS's federated evaluation rules, on a file small enough to score by hand."""

import pytest

from detimb.data.label_map import LabelMap
from detimb.data.coco import coco_api
from detimb.evaluation.coco_eval import evaluate_coco
from tests.conftest import needs_extra

needs_extra("faster_coco_eval", "fast-eval")


def lvis_file(neg_on_2: list[int], not_exhaustive_on_3: list[int], frequency: bool = True) -> dict:
    cats = [{"id": 1, "name": "cup"}, {"id": 2, "name": "fork"}]
    if frequency:
        cats[0]["frequency"], cats[1]["frequency"] = "r", "f"
    images = [{"id": i, "file_name": f"{i}.png", "width": 100, "height": 100, "neg_category_ids": [],
               "not_exhaustive_category_ids": []} for i in (1, 2, 3)]
    images[1]["neg_category_ids"] = neg_on_2
    images[2]["not_exhaustive_category_ids"] = not_exhaustive_on_3
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "area": 900, "iscrowd": 0},
            {"id": 2, "image_id": 3, "category_id": 1, "bbox": [50, 50, 30, 30], "area": 900, "iscrowd": 0},
            {"id": 3, "image_id": 1, "category_id": 2, "bbox": [60, 10, 20, 20], "area": 400, "iscrowd": 0}]
    return {"images": images, "annotations": anns, "categories": cats}


# class 1 (cup): a true positive on image 1 (score 0.5), the ground truth on image 3 found
# (score 0.6), a box on image 2 (score 0.9), and a stray box on image 3 (score 0.8)
RESULTS = [
    {"image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "score": 0.5},
    {"image_id": 3, "category_id": 1, "bbox": [50, 50, 30, 30], "score": 0.6},
    {"image_id": 2, "category_id": 1, "bbox": [10, 60, 30, 30], "score": 0.9},
    {"image_id": 3, "category_id": 1, "bbox": [0, 0, 20, 20], "score": 0.8},
    {"image_id": 1, "category_id": 2, "bbox": [60, 10, 20, 20], "score": 0.7},
]


def cup_ap(data: dict) -> tuple[float, dict]:
    report = evaluate_coco(coco_api(data), RESULTS, "bbox", LabelMap.from_categories(data["categories"]))
    return next(e["AP"] for e in report["per_class"] if e["name"] == "cup"), report


def test_unverified_images_do_not_count_and_not_exhaustive_misses_are_not_false_positives():
    # image 2 does not list cup as absent: its box is dropped. Image 3's cup labels are not
    # exhaustive: its stray box (0.8) matches nothing and is ignored. Ranked: 0.6 TP, 0.5 TP:
    # precision 1 at every recall -> AP 1.
    ap, report = cup_ap(lvis_file(neg_on_2=[], not_exhaustive_on_3=[1]))
    assert report["lvis_rules"] and ap == pytest.approx(1.0)
    # cup verified absent on image 2: 0.9 FP, then 0.6 TP, 0.5 TP -> precision 1/2, 2/3 at
    # recall 1/2, 1: the 101-point interpolated precision is 2/3 everywhere -> AP 2/3.
    ap, _ = cup_ap(lvis_file(neg_on_2=[1], not_exhaustive_on_3=[1]))
    assert ap == pytest.approx(2 / 3, abs=1e-6)
    # and the stray box on image 3 counts once image 3 is exhaustive: 0.9 FP, 0.8 FP, 0.6 TP,
    # 0.5 TP -> precision 1/3 at recall 1/2, 1/2 at recall 1 -> interpolated 1/2 -> AP 1/2.
    ap, _ = cup_ap(lvis_file(neg_on_2=[1], not_exhaustive_on_3=[]))
    assert ap == pytest.approx(0.5, abs=1e-6)


def test_groups_come_from_the_file_and_plain_coco_keeps_coco_rules():
    _, report = cup_ap(lvis_file(neg_on_2=[1], not_exhaustive_on_3=[1]))
    assert {e["name"]: e["group"] for e in report["per_class"]} == {"cup": "rare", "fork": "frequent"}
    assert report["group_source"] == "file" and report["groups"]["APr"] == pytest.approx(2 / 3, abs=1e-6)
    plain = lvis_file(neg_on_2=[1], not_exhaustive_on_3=[1], frequency=False)
    for img in plain["images"]:
        del img["neg_category_ids"], img["not_exhaustive_category_ids"]
    ap, report = cup_ap(plain)
    # COCO rules: 0.9 FP, 0.8 FP, 0.6 TP, 0.5 TP -> AP 1/2; no training statistics, no groups
    assert not report["lvis_rules"] and ap == pytest.approx(0.5, abs=1e-6)
    assert all("group" not in e for e in report["per_class"])
