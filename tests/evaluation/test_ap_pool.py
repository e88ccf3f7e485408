"""AP-pool against values worked out by hand (COCO's 101 recall points, interpolated
precision), with plain and LVIS-style files."""

from __future__ import annotations

import pytest

from detimb.data.coco import coco_api
from detimb.evaluation.ap_fixed import ap_fixed
from detimb.evaluation.ap_pool import ap_pool
from detimb.data.label_map import LabelMap

A, B = 1, 2  # A rare (2 training images), B frequent (500)
TRAIN_FREQ = {A: {"images": 2, "instances": 2}, B: {"images": 500, "instances": 900}}


def dataset(lvis: dict[int, dict] | None = None) -> dict:
    """Image 1 holds an A and a B, image 2 a B; ``lvis``: per image, its LVIS fields."""
    images = [{"id": i, "file_name": f"{i}.png", "width": 100, "height": 100, **((lvis or {}).get(i, {}))}
              for i in (1, 2)]
    box = lambda i, c, b: {"id": i, "image_id": b[0], "category_id": c, "bbox": b[1], "area": 400,  # noqa: E731
                           "iscrowd": 0}
    anns = [box(1, A, (1, [10, 10, 20, 20])), box(2, B, (1, [50, 50, 20, 20])), box(3, B, (2, [50, 50, 20, 20]))]
    return {"images": images, "annotations": anns, "categories": [{"id": A, "name": "a"}, {"id": B, "name": "b"}]}


def detections(a_scale: float = 1.0) -> list[dict]:
    """A: a stray on image 2 (0.95) and the true A (0.3); B: the true B on image 1 (0.9), a
    stray on image 2 (0.8). ``a_scale`` multiplies A's scores (a re-calibration of one class)."""
    return [{"image_id": 2, "category_id": A, "bbox": [0, 0, 20, 20], "score": 0.95 * a_scale},
            {"image_id": 1, "category_id": A, "bbox": [10, 10, 20, 20], "score": 0.3 * a_scale},
            {"image_id": 1, "category_id": B, "bbox": [50, 50, 20, 20], "score": 0.9},
            {"image_id": 2, "category_id": B, "bbox": [0, 60, 20, 20], "score": 0.8}]


def pool(gt: dict, results: list[dict]) -> dict:
    return ap_pool(coco_api(gt), results, "bbox", TRAIN_FREQ)


def test_pooled_ap_by_hand():
    """All pooled, by score: A stray (FP), B true (TP), B stray (FP), A true (TP); 3 ground
    truths: recall 0, 1/3, 1/3, 2/3 at precision 0, 1/2, 1/3, 1/2, interpolated to 1/2 at
    every point, so 1/2 at the 67 recall points 0 .. 0.66 and 0 beyond."""
    got = pool(dataset(), detections())
    assert got["mAP"] == pytest.approx(67 * 0.5 / 101)
    assert got["APr"] == pytest.approx(0.5)  # A alone: 1/2 at every recall point up to 1
    assert got["APf"] == pytest.approx(51 / 101)  # B alone: recall 1/2 at precision 1
    assert got["APc"] is None  # no common class: no pool


def test_rescaling_one_class_changes_ap_pool_and_not_ap_fixed():
    """A's scores x 0.1: B true, B stray, A stray, A true: precision 1, 1/2, 1/3, 1/2 at
    recall 1/3, 1/3, 1/3, 2/3, interpolated 1 up to 1/3 (34 points) and 1/2 to 2/3 (33)."""
    gt = dataset()
    got = pool(gt, detections(a_scale=0.1))
    assert got["mAP"] == pytest.approx((34 + 33 * 0.5) / 101)
    label_map = LabelMap.from_categories(gt["categories"])
    fixed = [ap_fixed(coco_api(gt), detections(s), "bbox", label_map, TRAIN_FREQ)["mAP"] for s in (1.0, 0.1)]
    assert fixed[0] == fixed[1] == pytest.approx((0.5 + 51 / 101) / 2)


def test_lvis_rules():
    """A is neither annotated nor verified absent on image 2: its stray there does not count
    (B true, B stray, A true: interpolated 1 to recall 1/3, 2/3 to 2/3). Verified absent, it
    counts as in plain COCO. A stray B on image 1, where B's labels are not exhaustive and it
    matches nothing, is ignored."""
    unknown = {1: {"neg_category_ids": [], "not_exhaustive_category_ids": [B]},
               2: {"neg_category_ids": [], "not_exhaustive_category_ids": []}}
    extra_b = {"image_id": 1, "category_id": B, "bbox": [0, 80, 15, 15], "score": 0.99}
    got = pool(dataset(unknown), [extra_b, *detections()])
    assert got["mAP"] == pytest.approx((34 + 33 * 2 / 3) / 101)
    absent = {1: {"neg_category_ids": [], "not_exhaustive_category_ids": []},
              2: {"neg_category_ids": [A], "not_exhaustive_category_ids": []}}
    assert pool(dataset(absent), detections())["mAP"] == pytest.approx(67 * 0.5 / 101)


def test_no_detections_score_zero_and_the_cap_keeps_each_class_top_k():
    gt = dataset()
    assert pool(gt, []) == {"dets_per_class": 10000, "mAP": 0.0, "APr": 0.0, "APc": None, "APf": 0.0}
    # k = 1 keeps A's stray (0.95) and B's true box (0.9): FP, TP with 3 ground truths
    capped = ap_pool(coco_api(gt), detections(), "bbox", TRAIN_FREQ, k=1)
    assert capped["mAP"] == pytest.approx(34 * 0.5 / 101)
