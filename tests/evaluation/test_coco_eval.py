"""Evaluation against pycocotools run directly, and against values worked out by hand."""

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detimb.data.coco import coco_api
from detimb.data.label_map import LabelMap
from detimb.evaluation.coco_eval import class_frequencies, evaluate_coco, format_table, frequency_group, write_reports
from tests.conftest import needs_extra


def gt_and_results(tiny_shapes, drop_category=None, jitter=0.0, seed=0):
    gt = json.loads((tiny_shapes / "annotations/val.json").read_text())
    rng = np.random.default_rng(seed)
    results = []
    for ann in gt["annotations"]:
        if ann["category_id"] == drop_category:
            continue
        x, y, w, h = ann["bbox"]
        dx, dy = rng.uniform(-jitter, jitter, 2) * np.array([w, h])
        results.append({"image_id": ann["image_id"], "category_id": ann["category_id"],
                        "bbox": [x + dx, y + dy, w, h], "score": float(rng.uniform(0.5, 1.0))})
    return gt, results


def direct_cocoeval(gt, results, cat_ids=None):
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        ev = COCOeval(coco_gt, coco_gt.loadRes(results), "bbox")
        if cat_ids is not None:
            ev.params.catIds = cat_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def test_perfect_detections_score_one(tiny_shapes):
    gt, results = gt_and_results(tiny_shapes)
    report = evaluate_coco(coco_api(gt), results, "bbox", LabelMap.from_categories(gt["categories"]))
    assert report["stats"]["mAP"] == pytest.approx(1.0)
    assert all(e["AP"] == pytest.approx(1.0) and e["AP50"] == pytest.approx(1.0) for e in report["per_class"])


def test_a_missing_class_scores_zero_and_others_one(tiny_shapes):
    gt, results = gt_and_results(tiny_shapes, drop_category=6)
    report = evaluate_coco(coco_api(gt), results, "bbox", LabelMap.from_categories(gt["categories"]))
    by_id = {e["category_id"]: e for e in report["per_class"]}
    assert by_id[6]["AP"] == 0.0 and all(by_id[c]["AP"] == pytest.approx(1.0) for c in range(1, 6))
    assert report["mAP_macro"] == pytest.approx(5 / 6)


def test_stats_and_per_class_equal_pycocotools_run_directly(tiny_shapes):
    gt, results = gt_and_results(tiny_shapes, jitter=0.25, seed=1)
    report = evaluate_coco(coco_api(gt), results, "bbox", LabelMap.from_categories(gt["categories"]))
    assert list(report["stats"].values()) == pytest.approx(list(direct_cocoeval(gt, results)), abs=1e-12)
    for entry in report["per_class"]:
        single = direct_cocoeval(gt, results, [entry["category_id"]])
        assert entry["AP"] == pytest.approx(single[0], abs=1e-12)
        assert entry["AP50"] == pytest.approx(single[1], abs=1e-12)
        assert entry["AP75"] == pytest.approx(single[2], abs=1e-12)


def test_frequency_groups_and_order(tiny_shapes):
    train = json.loads((tiny_shapes / "annotations/train.json").read_text())
    freq = class_frequencies(train)
    images_with = {c: len({a["image_id"] for a in train["annotations"] if a["category_id"] == c}) for c in freq}
    assert {c: f["images"] for c, f in freq.items()} == images_with
    assert freq[1]["instances"] == 24 and freq[6]["instances"] == 2
    assert [frequency_group(n, (10, 100)) for n in (0, 10, 11, 100, 101)] == [
        "rare", "rare", "common", "common", "frequent"]
    gt, results = gt_and_results(tiny_shapes, drop_category=1)
    report = evaluate_coco(coco_api(gt), results, "bbox", LabelMap.from_categories(gt["categories"]), freq, (3, 8))
    instances = [e["train_instances"] for e in report["per_class"]]
    assert instances == sorted(instances)  # rare first
    groups = {e["category_id"]: e["group"] for e in report["per_class"]}
    want = {c: frequency_group(images_with[c], (3, 8)) for c in freq}
    assert groups == want
    frequent = [c for c, g in want.items() if g == "frequent"]
    want_apf = np.mean([0.0 if c == 1 else 1.0 for c in frequent])
    assert report["groups"]["APf"] == pytest.approx(want_apf)


def test_no_detections_scores_zero(tiny_shapes):
    gt, _ = gt_and_results(tiny_shapes)
    report = evaluate_coco(coco_api(gt), [], "bbox", LabelMap.from_categories(gt["categories"]))
    assert report["stats"]["mAP"] == 0.0 and all(e["AP"] == 0.0 for e in report["per_class"])


def test_reports_are_written(tiny_shapes, tmp_path):
    gt, results = gt_and_results(tiny_shapes, jitter=0.1)
    report = evaluate_coco(coco_api(gt), results, "bbox", LabelMap.from_categories(gt["categories"]))
    write_reports(tmp_path, {"bbox": report})
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved["bbox"]["stats"] == report["stats"]
    rows = (tmp_path / "per_class_ap.csv").read_text().splitlines()
    assert len(rows) == 1 + 6 and rows[0].startswith("iou_type,category_id,name")
    assert (tmp_path / "per_class_ap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "per-class AP (rare first)" in format_table(report)


def segm_results(gt, seed=0):
    """Polygon ground truth as RLE detections, one of them shifted, scores random."""
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(seed)
    images = {im["id"]: im for im in gt["images"]}
    out = []
    for ann in gt["annotations"]:
        im = images[ann["image_id"]]
        rles = mask_utils.frPyObjects(ann["segmentation"], im["height"], im["width"])
        rle = mask_utils.merge(rles) if isinstance(rles, list) else rles
        rle["counts"] = rle["counts"].decode("ascii")
        out.append({"image_id": ann["image_id"], "category_id": ann["category_id"], "segmentation": rle,
                    "score": float(rng.uniform(0.3, 1.0))})
    return out


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_faster_coco_eval_backend_equals_pycocotools(tiny_shapes, iou_type):
    needs_extra("faster_coco_eval", "fast-eval")
    gt, results = gt_and_results(tiny_shapes, jitter=0.3, seed=4)
    if iou_type == "segm":
        results = segm_results(gt)
        # some masks missed, some twice: misses and duplicates enter the curve
        results = results[::3] + results[1::3] + results[:5]
    coco = coco_api(gt)
    label_map = LabelMap.from_categories(gt["categories"])
    before = json.dumps(results)
    a = evaluate_coco(coco, results, iou_type, label_map, backend="pycocotools")
    b = evaluate_coco(coco, results, iou_type, label_map, backend="faster_coco_eval")
    assert json.dumps(results) == before  # the evaluators' loadRes must not write into the caller's records
    assert list(a["stats"].values()) == pytest.approx(list(b["stats"].values()), abs=1e-9)
    for x, y in zip(a["per_class"], b["per_class"]):
        for key in ("AP", "AP50", "AP75", "APs", "APm", "APl"):
            assert (x[key] is None and y[key] is None) or x[key] == pytest.approx(y[key], abs=1e-9), (x, y)


def test_a_missing_fast_eval_extra_names_the_install(monkeypatch, tiny_shapes):
    import sys

    monkeypatch.setitem(sys.modules, "faster_coco_eval", None)  # import fails as if not installed
    gt, results = gt_and_results(tiny_shapes)
    coco = coco_api(gt)
    from detimb.evaluation.coco_eval import run_cocoeval
    from detimb.optional import MissingExtraError

    with pytest.raises(MissingExtraError, match=r"pip install 'detimb\[fast-eval\]'"):
        run_cocoeval(coco, results, "bbox", 100, "faster_coco_eval")
