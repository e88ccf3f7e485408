"""The sweep's AP-fixed: per bootstrap weights against pycocotools on each class's top k
detections with no per-image cap, by hand, and carried into the paired comparison."""

from __future__ import annotations

import contextlib
import copy
import io
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detimb.data.coco import coco_api
from detimb.sweeps.analysis import FIXED_METRICS, METRICS, RunScores, compare
from detimb.sweeps.report import forest_plot
from detimb.sweeps.scoring import ap_table, match_run
from tests.sweeps.test_scoring_and_statistics import random_dataset


def crowded(seed: int) -> tuple[dict, list[dict]]:
    """The random dataset with 130 detections of one class in image 1: past COCO's 100."""
    data, results = random_dataset(seed)
    rng = np.random.default_rng(seed + 10)
    for _ in range(130):
        x, y = rng.uniform(0, 60, 2)
        results.append({"image_id": 1, "category_id": 1, "score": float(rng.random()),
                        "bbox": [float(x), float(y), 20.0, 20.0]})
    return data, results


def pycocotools_fixed(data: dict, results: list[dict], k: int) -> list[float | None]:
    """The released AP-fixed by its definition: each class's top k detections over the images
    (a stable sort by score), then pycocotools with no per-image limit."""
    kept_images = {im["id"] for im in data["images"]}
    mine = [r for r in results if r["image_id"] in kept_images]
    top = []
    for c in sorted({r["category_id"] for r in mine}):
        top += sorted((r for r in mine if r["category_id"] == c), key=lambda r: -r["score"])[:k]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(data)
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes([dict(r) for r in top]), "bbox")
        ev.params.maxDets = [1, 10, 100000]
        ev.evaluate()
        ev.accumulate()
    p = ev.eval["precision"][:, :, :, 0, 2]
    return [float(p[:, :, c].mean()) if (p[:, :, c] > -1).all() else None for c in range(p.shape[2])]


@pytest.mark.parametrize(("seed", "k"), [(0, 3), (1, 10), (2, 10_000)])
def test_ap_fixed_equals_pycocotools_on_each_class_top_k(seed, k):
    data, results = crowded(seed)
    matches = match_run(coco_api(copy.deepcopy(data)), results, max_dets=None)
    want = [np.nan if v is None else v for v in pycocotools_fixed(data, results, k)]
    assert ap_table(matches, np.ones((1, 40)), per_class=k)[0] == pytest.approx(want, abs=1e-12, nan_ok=True)
    # on a subset, the top k are counted among its images only
    weights = np.ones(40)
    weights[seed::2] = 0
    subset = {**data, "images": [im for i, im in enumerate(data["images"]) if weights[i]],
              "annotations": [a for a in data["annotations"] if weights[a["image_id"] - 1]]}
    want = [np.nan if v is None else v for v in pycocotools_fixed(subset, results, k)]
    assert ap_table(matches, 3 * weights[None], per_class=k)[0] == pytest.approx(want, abs=1e-12, nan_ok=True)


def test_the_uncapped_matching_keeps_what_coco_cuts():
    data, results = crowded(0)
    capped, uncapped = match_run(coco_api(data), results), match_run(coco_api(data), results, max_dets=None)
    in_image_1 = sum(r["image_id"] == 1 and r["category_id"] == 1 for r in results)
    assert in_image_1 > 100 and uncapped.classes[0].image.size == capped.classes[0].image.size + in_image_1 - 100
    assert ap_table(capped, np.ones((1, 40)))[0, 0] != ap_table(uncapped, np.ones((1, 40)), per_class=10_000)[0, 0]


def test_the_per_class_cap_by_hand():
    # image 1: one object, a detection elsewhere at 0.9; image 2: one object found exactly at 0.8
    box = [10, 10, 20, 20]
    data = {"images": [{"id": i, "file_name": f"{i}", "width": 100, "height": 100} for i in (1, 2)],
            "categories": [{"id": 1, "name": "x"}],
            "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": box, "area": 400, "iscrowd": 0}
                            for i in (1, 2)]}
    results = [{"image_id": 1, "category_id": 1, "bbox": [60, 60, 20, 20], "score": 0.9},
               {"image_id": 2, "category_id": 1, "bbox": box, "score": 0.8}]
    matches = match_run(coco_api(data), results, max_dets=None)
    # k=1 keeps the false positive only: AP 0. k=2: recall 1/2 at precision 1/2, so the 51
    # recall thresholds 0..0.50 score 1/2: 25.5/101. Image 2 alone with k=1: its own detection
    # is its top one: AP 1.
    table = ap_table(matches, np.array([[1, 1], [0, 1]]), per_class=1)[:, 0]
    assert table == pytest.approx([0.0, 1.0], abs=1e-12)
    assert ap_table(matches, np.ones((1, 2)), per_class=2)[0, 0] == pytest.approx(25.5 / 101, abs=1e-12)
    with pytest.raises(ValueError, match="per_class keeps >= 1"):
        ap_table(matches, np.ones((1, 2)), per_class=0)


def scores(ap: list[float], fixed: list[float] | None) -> RunScores:
    """One run's per-class tables on the 'selection' half; its three draws copy the half's."""
    run = RunScores({"selection": np.array(ap)}, {"selection": np.tile(ap, (3, 1))})
    if fixed is not None:
        run.fixed_full["selection"] = np.array(fixed)
        run.fixed_draws["selection"] = np.tile(fixed, (3, 1))
    return run


def test_the_comparison_pairs_ap_fixed_by_seed_and_the_forest_shows_a_fixed_objective(tmp_path: Path):
    groups, names = ["rare", "frequent"], ["tail", "head"]
    base = {0: scores([0.1, 0.5], [0.1, 0.5]), 1: scores([0.2, 0.6], [0.2, 0.6])}
    # seed 0: APr +0.2 under AP but +0.0 under AP-fixed (a re-ranking); seed 1: +0.1 and +0.1
    mine = {0: scores([0.3, 0.5], [0.1, 0.5]), 1: scores([0.3, 0.6], [0.3, 0.6])}
    comp = compare("remedy", base, mine, "selection", groups, names)
    assert set(comp.metrics) == set(METRICS) | set(FIXED_METRICS)
    assert comp.metrics["APr"].per_seed == pytest.approx((0.2, 0.1))
    assert comp.metrics["APr-fixed"].per_seed == pytest.approx((0.0, 0.1))
    assert comp.metrics["AP-fixed"].per_seed == pytest.approx((0.0, 0.05))
    assert comp.metrics["APr-fixed"].mean == pytest.approx(0.05)
    without = compare("remedy", base, {0: scores([0.3, 0.5], None), 1: scores([0.3, 0.6], None)}, "selection",
                      groups, names)
    assert all(without.metrics[m] is None for m in FIXED_METRICS) and without.metrics["APr"] is not None
    forest_plot(tmp_path / "forest.png", {"remedy": comp}, {"remedy": comp}, "APr-fixed")
    assert (tmp_path / "forest.png").stat().st_size > 0
