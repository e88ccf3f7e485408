import hashlib
import json
from collections import Counter, defaultdict

import numpy as np
import pytest

from detimb.data.synthetic import ShapesSpec, make_shapes_dataset


def load(root, split):
    return json.loads((root / "annotations" / f"{split}.json").read_text())


def test_default_spec_is_long_tailed_with_six_classes():
    spec = ShapesSpec()
    assert len(spec.categories) >= 6
    assert list(spec.train_counts) == sorted(spec.train_counts, reverse=True)
    assert spec.train_counts[0] / spec.train_counts[-1] >= 50


def test_counts_are_exact_and_every_class_is_in_val(tiny_shapes):
    for split, counts in (("train", (24, 12, 8, 6, 4, 2)), ("val", (6, 4, 4, 3, 3, 2))):
        data = load(tiny_shapes, split)
        got = Counter(a["category_id"] for a in data["annotations"])
        assert [got[i + 1] for i in range(6)] == list(counts)


def test_records_are_consistent(tiny_shapes):
    data = load(tiny_shapes, "train")
    sizes = {im["id"]: (im["width"], im["height"]) for im in data["images"]}
    for ann in data["annotations"]:
        x, y, w, h = ann["bbox"]
        W, H = sizes[ann["image_id"]]
        assert x >= 0 and y >= 0 and x + w <= W + 1e-6 and y + h <= H + 1e-6 and w > 0 and h > 0
        poly = np.array(ann["segmentation"][0]).reshape(-1, 2)
        # coordinates are rounded to 2 decimals, x and w each
        assert poly[:, 0].min() >= x - 0.02 and poly[:, 0].max() <= x + w + 0.02
        assert 0 < ann["area"] <= w * h + 1e-6
        file_name = next(i["file_name"] for i in data["images"] if i["id"] == ann["image_id"])
        assert (tiny_shapes / "train" / file_name).is_file()


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    spec = dict(train_counts=(5, 2), val_counts=(2, 2), image_size=48, min_object=8, max_object=16)
    digests = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        make_shapes_dataset(tmp_path / name, ShapesSpec(**spec, seed=seed))
        h = hashlib.sha256((tmp_path / name / "annotations/train.json").read_bytes())
        for png in sorted((tmp_path / name / "train").glob("*.png")):
            h.update(png.read_bytes())
        digests.append(h.hexdigest())
    assert digests[0] == digests[1] != digests[2]


def test_rare_classes_seldom_share_an_image_with_the_head_class(tmp_path):
    make_shapes_dataset(tmp_path, ShapesSpec(seed=0))
    data = load(tmp_path, "train")
    classes = defaultdict(set)
    for ann in data["annotations"]:
        classes[ann["image_id"]].add(ann["category_id"])
    rare_images = [c for c in classes.values() if c & {4, 5, 6}]
    with_head = sum(1 in c for c in rare_images)
    assert with_head / len(rare_images) < 0.15


def test_bad_spec_is_refused():
    with pytest.raises(ValueError):
        ShapesSpec(train_counts=(1, 2), val_counts=(1,))
    with pytest.raises(ValueError):
        ShapesSpec(train_counts=(1,) * 9, val_counts=(1,) * 9)
