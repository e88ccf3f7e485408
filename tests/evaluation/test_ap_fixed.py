"""AP-fixed against values worked out by hand and the released script's selection, restated."""

from __future__ import annotations

from collections import defaultdict

import pytest

from detimb.data.coco import coco_api
from detimb.data.label_map import LabelMap
from detimb.evaluation.ap_fixed import ap_fixed, top_detections_per_class
from detimb.evaluation.coco_eval import evaluate_coco
from tests.conftest import needs_extra


def released_selection(results: list[dict], topk: int) -> list[dict]:
    """``large-vocab-devil`` ``scripts/evaluate_ap_fixed.py`` @87dcb5e, lines 33-40, restated."""
    by_cat = defaultdict(list)
    for ann in results:
        by_cat[ann["category_id"]].append(ann)
    out = []
    for cat_anns in by_cat.values():
        out.extend(sorted(cat_anns, key=lambda x: x["score"], reverse=True)[:topk])
    return out


def dataset(lvis: bool) -> dict:
    """Image 1: one 'cup'; images 2-4: one 'fork' each. 100 x 100 px."""
    images = [{"id": i, "file_name": f"{i}.png", "width": 100, "height": 100} for i in (1, 2, 3, 4)]
    if lvis:
        for im in images:
            im["neg_category_ids"], im["not_exhaustive_category_ids"] = ([2] if im["id"] == 1 else [1]), []
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "area": 900, "iscrowd": 0}]
    anns += [{"id": i, "image_id": i, "category_id": 2, "bbox": [50, 50, 30, 30], "area": 900, "iscrowd": 0}
             for i in (2, 3, 4)]
    cats = [{"id": 1, "name": "cup"}, {"id": 2, "name": "fork"}]
    if lvis:
        cats[0]["frequency"], cats[1]["frequency"] = "r", "f"
    return {"images": images, "annotations": anns, "categories": cats}


def cup_flood() -> list[dict]:
    """Image 1: 399 stray cups scored 0.9 .. 0.5, then the true cup, scored lowest (0.1)."""
    strays = [{"image_id": 1, "category_id": 1, "bbox": [60 + (i % 7), 60 + (i % 5), 10, 10],
               "score": 0.9 - 0.001 * i} for i in range(399)]
    return strays + [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "score": 0.1}]


def forks() -> list[dict]:
    """In file order: true forks on images 2 and 3 scored low, a stray (0.9) and the true fork
    on image 4 (0.8) scored high."""
    return [{"image_id": 2, "category_id": 2, "bbox": [50, 50, 30, 30], "score": 0.1},
            {"image_id": 3, "category_id": 2, "bbox": [50, 50, 30, 30], "score": 0.2},
            {"image_id": 4, "category_id": 2, "bbox": [0, 0, 20, 20], "score": 0.9},
            {"image_id": 4, "category_id": 2, "bbox": [50, 50, 30, 30], "score": 0.8}]


@pytest.mark.parametrize("lvis", [False, True], ids=["coco", "lvis_style"])
def test_ap_fixed_by_hand(lvis):
    if lvis:
        needs_extra("faster_coco_eval", "fast-eval")
    data = dataset(lvis)
    gt, label_map, results = coco_api(data), LabelMap.from_categories(data["categories"]), cup_flood() + forks()
    fixed = ap_fixed(gt, results, "bbox", label_map, k=2 + 400 - 2)  # k = 400: every cup kept
    # cup, no per-image cap: the true cup ranks 400th -> precision 1/400 at recall 1, at every
    # interpolated recall point -> AP 1/400. With COCO's (or LVIS's) per-image cap it is cut.
    assert fixed["per_class"][1] == pytest.approx(1 / 400, rel=1e-6)
    capped = evaluate_coco(gt, results, "bbox", label_map, max_dets=300 if lvis else 100)
    assert next(e["AP"] for e in capped["per_class"] if e["name"] == "cup") == pytest.approx(0.0)
    # fork with k = 2: the two best by score are the stray (0.9, FP) and image 4's (0.8, TP):
    # precision 1/2 at recall 1/3 -> recall points 0 .. 0.33 (34 of 101) at 1/2.
    two = ap_fixed(gt, results, "bbox", label_map, k=2)
    assert two["per_class"][2] == pytest.approx(0.5 * 34 / 101, rel=1e-6)
    assert two["classes_under_k"] == 0 and fixed["classes_under_k"] == 1  # 4 forks < 400
    # AP-fixed's mAP is the mean over the classes (pycocotools' own stats[0] is -1 for a cap other than 100)
    assert two["mAP"] == pytest.approx((two["per_class"][1] + two["per_class"][2]) / 2, rel=1e-9)
    assert fixed["mAP"] == pytest.approx((fixed["per_class"][1] + fixed["per_class"][2]) / 2, rel=1e-9)


def test_selection_equals_the_released_script_and_keeps_tied_file_order():
    results = cup_flood() + forks() + [{"image_id": 4, "category_id": 2, "bbox": [1, 1, 5, 5], "score": 0.8}]
    for k in (1, 2, 3, 50, 10_000):
        ours, _ = top_detections_per_class(results, k)
        assert sorted(map(id, ours)) == sorted(map(id, released_selection(results, k)))
    ours, _ = top_detections_per_class(forks() + [{"image_id": 4, "category_id": 2, "bbox": [1, 1, 5, 5],
                                                    "score": 0.8}], 2)
    assert [r["bbox"] for r in ours] == [[0, 0, 20, 20], [50, 50, 30, 30]]  # of the two 0.8s, the first in file
    with pytest.raises(ValueError, match="k >= 1"):
        top_detections_per_class(results, 0)


def test_no_detections():
    data = dataset(lvis=False)
    fixed = ap_fixed(coco_api(data), [], "bbox", LabelMap.from_categories(data["categories"]))
    assert fixed["mAP"] == 0.0 and fixed["classes_under_k"] == 0
