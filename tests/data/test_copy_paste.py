"""Class-aware copy-paste: pasted pixels, the occlusion rule worked by hand, boxes equal to
visible masks, the class-aware draw's frequencies, and exact reseeding through the dataset."""

from __future__ import annotations

import json
from collections import Counter

import cv2
import numpy as np
import pytest

from detimb.config import load_config
from detimb.data.coco import CocoDetection
from detimb.data.copy_paste import CopyPaste, CopyPasteSettings
from detimb.data.image_samplers import EpochIndex
from detimb.data.instance_masks import mask_box
from detimb.errors import ConfigError


def square(ann_id: int, image_id: int, cat: int, x: int, y: int, w: int, h: int, polygon: bool = True) -> dict:
    ann = {"id": ann_id, "image_id": image_id, "category_id": cat, "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0}
    if polygon:  # a rectangle on pixel edges: its mask's box is its bbox exactly
        ann["segmentation"] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    return ann


def paster(images: list[dict], anns: list[dict], **settings) -> CopyPaste:
    by_image: dict[int, list[dict]] = {}
    for a in anns:
        by_image.setdefault(a["image_id"], []).append(a)
    return CopyPaste(images, lambda i: by_image.get(i, []), lambda c: c, CopyPasteSettings(**settings))


def destination(h: int = 64, w: int = 64) -> np.ndarray:
    return np.zeros((h, w, 3), dtype=np.uint8)


def no_objects() -> tuple[np.ndarray, np.ndarray, list, np.ndarray]:
    return np.zeros((0, 4), np.float32), np.zeros(0, np.int64), [], np.zeros(0, np.float32)


def rect_mask(h: int, w: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def test_pasted_pixels_come_from_the_source_and_stay_inside_a_smaller_image():
    source = np.full((100, 100, 3), 7, np.uint8)
    source[70:95, 80:98] = 200  # the instance: 18 x 25 at (80, 70), beyond a 64 x 64 destination
    images = [{"id": 1, "file_name": "s.png", "height": 100, "width": 100}]
    cp = paster(images, [square(1, 1, 3, 80, 70, 18, 25)])
    out = cp.apply(destination(), *no_objects(), cp.sources, lambda info: source)
    assert out.pasted == 1 and out.labels.tolist() == [3]
    assert out.boxes.tolist() == [[46, 39, 64, 64]]  # moved the least that keeps it inside: x 64 - 18, y 64 - 25
    assert (out.image[39:64, 46:64] == 200).all() and out.image[:39].max() == 0
    assert mask_box(out.masks[0]).tolist() == out.boxes[0].tolist()


def test_an_instance_larger_than_the_destination_is_not_pasted():
    images = [{"id": 1, "file_name": "s.png", "height": 100, "width": 100}]
    cp = paster(images, [square(1, 1, 2, 0, 0, 80, 30)])
    out = cp.apply(destination(), *no_objects(), cp.sources, lambda info: np.ones((100, 100, 3), np.uint8))
    assert out.pasted == 0 and len(out.boxes) == 0


def test_the_occlusion_rule_by_hand():
    """Destination: A 40 x 40 at (0, 0) (1600 px), B 20 x 20 at (44, 0), C 5 x 5 at (10, 50).
    Pasted: a 20 x 40 box over A's right half (A's box moves 20 px, 800 px stay: kept with
    box [0, 0, 20, 40]); a 12 x 20 box over B's right part (moves 12 px, 160 px stay:
    removed); a box over all of C (nothing visible: removed)."""
    images = [{"id": 9, "file_name": "s.png", "height": 64, "width": 64}]
    sources = [square(1, 9, 5, 20, 0, 20, 40, polygon=False), square(2, 9, 6, 52, 0, 12, 20, polygon=False),
               square(3, 9, 4, 8, 48, 9, 9, polygon=False)]
    cp = paster(images, sources)
    boxes = np.array([[0, 0, 40, 40], [44, 0, 64, 20], [10, 50, 15, 55]], np.float32)
    masks = [rect_mask(64, 64, 0, 0, 40, 40), rect_mask(64, 64, 44, 0, 64, 20), rect_mask(64, 64, 10, 50, 15, 55)]
    out = cp.apply(destination(), boxes, np.array([1, 2, 3]), masks, np.array([1600, 400, 25], np.float32),
                   cp.sources, lambda info: np.full((64, 64, 3), 9, np.uint8))
    assert out.labels.tolist() == [1, 5, 6, 4] and out.removed == 2
    assert out.boxes[0].tolist() == [0, 0, 20, 40] and out.areas[0] == 800
    for box, mask in zip(out.boxes, out.masks):
        assert mask_box(mask).tolist() == box.tolist()


def test_uncovered_objects_keep_their_annotated_box_and_area():
    images = [{"id": 9, "file_name": "s.png", "height": 64, "width": 64}]
    cp = paster(images, [square(1, 9, 5, 50, 50, 10, 10)])
    boxes = np.array([[1.5, 2.25, 20.5, 30.75]], np.float32)
    out = cp.apply(destination(), boxes, np.array([1]), [rect_mask(64, 64, 1, 2, 21, 31)], np.array([123.0]),
                   cp.sources, lambda info: np.full((64, 64, 3), 9, np.uint8))
    assert out.boxes[0].tolist() == boxes[0].tolist() and out.areas[0] == 123.0


def test_the_destination_and_cached_source_images_are_not_written():
    images = [{"id": 1, "file_name": "s.png", "height": 64, "width": 64}]
    cp = paster(images, [square(1, 1, 2, 5, 5, 10, 10)])
    cached, dest = np.full((64, 64, 3), 50, np.uint8), destination()
    cached.flags.writeable = False  # as a shared, cached decoded image
    out = cp.apply(dest, *no_objects(), cp.sources, lambda info: cached)
    assert dest.max() == 0 and (out.image[5:15, 5:15] == 50).all()


def test_instances_are_drawn_in_proportion_to_their_class_repeat_factor():
    """100 images: class 1 in all of them (2 instances each), class 2 in 10, class 3 in 2.
    Threshold 0.1, sqrt: r = 1, 1, sqrt(0.1 / 0.02) = 2.236; expected shares n_c r_c / sum."""
    images = [{"id": i, "file_name": f"{i}.png", "height": 64, "width": 64} for i in range(100)]
    anns = [square(len(images) * k + i, i, 1, 2 + 20 * k, 2, 8, 8) for i in range(100) for k in range(2)]
    anns += [square(1000 + i, i, 2, 40, 40, 8, 8) for i in range(10)]
    anns += [square(2000 + i, i, 3, 40, 20, 8, 8) for i in range(2)]
    cp = paster(images, anns, max_pasted=1000, repeat_threshold=0.1)
    assert cp.class_factors[3] == pytest.approx(5 ** 0.5) and cp.class_factors[1] == cp.class_factors[2] == 1
    rng = np.random.default_rng(0)
    counts: Counter = Counter()
    for _ in range(60):
        counts.update(s.annotation["category_id"] for s in cp.draw(rng, own_image=-1))
    total = sum(counts.values())
    weights = {1: 200 * 1.0, 2: 10 * 1.0, 3: 2 * 5 ** 0.5}
    for cat, w in weights.items():
        p = w / sum(weights.values())
        assert abs(counts[cat] - total * p) < 5 * (total * p * (1 - p)) ** 0.5, (cat, counts, total)


def test_draw_counts_are_randint_0_to_max_and_skip_the_items_own_image():
    images = [{"id": i, "file_name": f"{i}.png", "height": 64, "width": 64} for i in range(2)]
    cp = paster(images, [square(1, 0, 1, 1, 1, 5, 5), square(2, 1, 1, 1, 1, 5, 5)], max_pasted=4)
    rng = np.random.default_rng(1)
    sizes = [len(cp.draw(rng, own_image=5)) for _ in range(400)]
    assert set(sizes) == {0, 1, 2, 3}  # numpy's integers(0, 4), as mmdetection's randint(0, 4)
    assert all(s.image == 1 for _ in range(50) for s in cp.draw(rng, own_image=0))
    assert paster(images, [], max_pasted=4).draw(rng, 0) == []


@pytest.fixture
def tiny_split(tmp_path):
    """Four 48 x 48 images, each with one coloured square of its own class (masks on pixel
    edges); image 3 is LVIS-style with class 1 verified absent."""
    images, anns = [], []
    for i in range(4):
        img = np.zeros((48, 48, 3), np.uint8)
        img[8 + 4 * i:24 + 4 * i, 8:24] = 60 * (i + 1)
        cv2.imwrite(str(tmp_path / f"{i}.png"), img)
        images.append({"id": i + 1, "file_name": f"{i}.png", "height": 48, "width": 48,
                       "neg_category_ids": [1] if i == 3 else [], "not_exhaustive_category_ids": []})
        anns.append(square(i + 1, i + 1, i + 1, 8, 8 + 4 * i, 16, 16))
    cats = [{"id": c, "name": f"c{c}"} for c in range(1, 5)]
    (tmp_path / "a.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return tmp_path


def test_the_dataset_pastes_reproducibly_per_epoch_and_index(tiny_split):
    settings = CopyPasteSettings(max_pasted=4)
    ds = CocoDetection(tiny_split / "a.json", tiny_split, with_masks=True, copy_paste=settings,
                       transforms=[{"type": "HorizontalFlip", "p": 0.5}], seed=3)
    again = CocoDetection(tiny_split / "a.json", tiny_split, with_masks=True, copy_paste=settings,
                          transforms=[{"type": "HorizontalFlip", "p": 0.5}], seed=3)
    seen = []
    for epoch in range(4):
        for index in range(4):
            image, target = ds[EpochIndex(epoch, index)]
            image2, target2 = again[EpochIndex(epoch, index)]
            assert torch_equal(image, image2) and torch_equal(target["boxes"], target2["boxes"])
            for box, mask in zip(target["boxes"], target["masks"]):
                assert mask_box(mask.numpy()).tolist() == box.tolist()  # every box is its visible mask's
            assert ((target["boxes"] >= 0) & (target["boxes"][:, [2, 3]] <= 48).repeat(1, 2)).all()
            if index == 3:
                assert 1 not in target["labels"].tolist() or target["neg_labels"].tolist() == []
            seen.append(len(target["labels"]))
    assert max(seen) > 1  # something was pasted


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_copy_paste_is_refused_on_the_validation_split_and_for_segmentation(tiny_config):
    with pytest.raises(ConfigError, match="data.val.copy_paste.enabled"):
        tiny_config("faster_rcnn", data={"val": {"copy_paste": {"enabled": True}}})
    with pytest.raises(ConfigError, match="max_pasted"):
        load_config("detimb://demo/faster_rcnn_shapes", overrides=["data.train.copy_paste.max_pasted=-1"])
