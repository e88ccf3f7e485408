"""AP per bootstrap draw against pycocotools and by hand; the combined interval by hand."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from scipy import stats

from detimb.data.coco import coco_api
from detimb.sweeps.analysis import make_half
from detimb.sweeps.scoring import ap_table, match_run
from detimb.sweeps.statistics import combined_interval


def bootstrap_only_interval(bootstrap_means: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The percentile interval of the image bootstrap alone, seeds held fixed: what an
    analysis that ignores training noise would report."""
    return float(np.quantile(bootstrap_means, 0.5 - level / 2)), float(np.quantile(bootstrap_means, 0.5 + level / 2))


def random_dataset(seed: int) -> tuple[dict, list[dict]]:
    rng = np.random.default_rng(seed)
    images = [{"id": i, "file_name": f"{i}.png", "width": 100, "height": 100} for i in range(1, 41)]
    anns, results = [], []
    for im in images:
        for _ in range(rng.integers(0, 4)):
            c = int(rng.choice([1, 2, 5], p=[0.6, 0.3, 0.1]))
            x, y = rng.uniform(0, 60, 2)
            w, h = rng.uniform(10, 40, 2)
            anns.append({"id": len(anns) + 1, "image_id": im["id"], "category_id": c, "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": int(rng.random() < 0.05)})
            for _ in range(rng.integers(0, 3)):
                label = c if rng.random() < 0.8 else int(rng.choice([1, 2, 5]))
                results.append({"image_id": im["id"], "category_id": label, "score": float(rng.random()),
                                "bbox": [x + rng.normal(0, 4), y + rng.normal(0, 4), w, h]})
        results.append({"image_id": im["id"], "category_id": int(rng.choice([1, 2, 5])), "score": float(rng.random()),
                        "bbox": [float(v) for v in rng.uniform(0, 50, 4) + [0, 0, 5, 5]]})
    cats = [{"id": c, "name": f"c{c}"} for c in (1, 2, 5)]
    return {"images": images, "categories": cats, "annotations": anns}, results


def pycocotools_per_class(data: dict, results: list[dict]) -> list[float | None]:
    """pycocotools' per-class AP (IoU 0.50:0.95, area all, 100 detections)."""
    kept = {im["id"] for im in data["images"]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(data)
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes([dict(r) for r in results if r["image_id"] in kept]), "bbox")
        ev.evaluate()
        ev.accumulate()
    p = ev.eval["precision"][:, :, :, 0, 2]
    return [float(p[:, :, k].mean()) if (p[:, :, k] > -1).all() else None for k in range(p.shape[2])]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_all_images_give_pycocotools_ap_and_a_subset_its_ap_on_those_images(seed):
    data, results = random_dataset(seed)
    matches = match_run(coco_api(copy.deepcopy(data)), results)
    assert ap_table(matches, np.ones((1, 40)))[0] == pytest.approx(pycocotools_per_class(data, results), abs=1e-12)
    weights = np.ones(40)
    weights[seed::3] = 0
    subset = {**data, "images": [im for k, im in enumerate(data["images"]) if weights[k]],
              "annotations": [a for a in data["annotations"] if weights[a["image_id"] - 1]]}
    want = [np.nan if v is None else v for v in pycocotools_per_class(subset, results)]
    assert ap_table(matches, weights[None])[0] == pytest.approx(want, abs=1e-12, nan_ok=True)
    assert ap_table(matches, 2 * weights[None])[0] == pytest.approx(want, abs=1e-12, nan_ok=True)  # scale-free


@pytest.mark.parametrize("seed", [3, 4])
def test_rows_with_different_images_each_give_pycocotools_ap_on_their_images(seed):
    # one call scores every row together (a draw set); each row's images differ, some images
    # no row weighs, so each row must still be pycocotools' AP on its own images
    data, results = random_dataset(seed)
    matches = match_run(coco_api(copy.deepcopy(data)), results)
    rng = np.random.default_rng(seed)
    weights = (rng.random((6, 40)) < 0.6).astype(float)
    weights[:, :8] = 0  # a block of images no row weighs (the other half of a split)
    weights[0] = 0
    weights[0, 10] = 1  # one image alone
    table = ap_table(matches, weights)
    for row, w in zip(table, weights):
        subset = {**data, "images": [im for k, im in enumerate(data["images"]) if w[k]],
                  "annotations": [a for a in data["annotations"] if w[a["image_id"] - 1]]}
        want = [np.nan if v is None else v for v in pycocotools_per_class(subset, results)]
        assert row == pytest.approx(want, abs=1e-12, nan_ok=True)


def test_ap_of_bootstrap_draws_by_hand():
    # image 1: one object found exactly (score 0.9); image 2: one object, one detection elsewhere (0.8)
    data = {"images": [{"id": 1, "file_name": "a", "width": 100, "height": 100},
                       {"id": 2, "file_name": "b", "width": 100, "height": 100}],
            "categories": [{"id": 1, "name": "x"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400,
                             "iscrowd": 0},
                            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400,
                             "iscrowd": 0}]}
    results = [{"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9},
               {"image_id": 2, "category_id": 1, "bbox": [60, 60, 20, 20], "score": 0.8}]
    matches = match_run(coco_api(data), results)
    table = ap_table(matches, np.array([[2, 0], [1, 1], [0, 2]]))[:, 0]
    # (2, 0): every object found first: AP 1. (1, 1): recall 1/2 at precision 1, so the 51 recall
    # thresholds 0..0.50 score 1 and the other 50 score 0: 51/101. (0, 2): nothing found: 0.
    assert table == pytest.approx([1.0, 51 / 101, 0.0], abs=1e-12)


def test_the_combined_interval_by_hand():
    # d = (0.1, 0.3): mean 0.2, var_s 0.02; bootstrap means (0.1, 0.2, 0.3): var 0.01
    interval = combined_interval(np.array([0.1, 0.3]), np.array([0.1, 0.2, 0.3]))
    half = 12.706204736174705 * np.sqrt(0.02 / 2 + 0.01)  # t(0.975, 1 degree of freedom)
    assert stats.t.ppf(0.975, 1) == pytest.approx(12.706204736174705)
    assert (interval.mean, interval.low, interval.high) == pytest.approx((0.2, 0.2 - half, 0.2 + half))
    assert interval.per_seed == (0.1, 0.3) and not interval.beyond_noise


def test_seeds_that_disagree_in_sign_keep_a_difference_within_noise():
    # METHODS.md's held-out Seesaw case: per-seed paired ΔAPr +0.149, +0.228, -0.005
    per_seed = np.array([0.149, 0.228, -0.005])
    rng = np.random.default_rng(0)
    boot = per_seed.mean() + rng.normal(0.0, 0.01, 1000)  # the image bootstrap of the seed mean: tight
    low, high = bootstrap_only_interval(boot)
    assert low > 0  # images alone would call it certain
    interval = combined_interval(per_seed, boot)
    assert interval.low < 0 < interval.high and not interval.beyond_noise
    assert "within noise" in interval.words("ΔAPr")


def test_one_seed_says_training_noise_is_not_measured():
    interval = combined_interval(np.array([0.05]), np.array([0.04, 0.05, 0.06]))
    assert interval.method.startswith("one seed") and interval.low == pytest.approx(0.05 - 1.959964 * 0.01, abs=1e-6)


def test_draws_resample_only_their_half_and_are_seeded():
    ids = tuple(range(1, 11))
    half = make_half("selection", ids, (2, 4, 6, 8), 50, seed=3)
    assert half.weights.tolist() == [0, 1, 0, 1, 0, 1, 0, 1, 0, 0]
    assert np.all(half.draws.sum(axis=1) == 4) and np.all(half.draws[:, half.weights == 0] == 0)
    assert np.array_equal(half.draws, make_half("selection", ids, (2, 4, 6, 8), 50, seed=3).draws)
