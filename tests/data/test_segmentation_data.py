"""Class maps, patch samplers, mixup and the segmentation dataset."""

import numpy as np
import pytest
import torch

from detimb.data.class_map import class_map
from detimb.data.coco import CocoDetection
from detimb.data.dense_augment import AsymmetricAugmentation, AsymmetricMixup, Mixup
from detimb.data.label_map import LabelMap
from detimb.data.patch_samplers import ClassBalancedPatches, RandomPatches
from detimb.data.segmentation import SegmentationDataset, crop, image_pixel_counts
from detimb.data.transforms import build_albumentations

LABELS = LabelMap((3, 7), ("big", "small"))


def square(cat, x, y, side, crowd=0):
    poly = [x, y, x + side, y, x + side, y + side, x, y + side]
    return {"category_id": cat, "bbox": [x, y, side, side], "area": side * side, "segmentation": [poly],
            "iscrowd": crowd}


def test_class_map_paints_the_smaller_instance_on_top():
    anns = [square(7, 2, 2, 2), square(3, 0, 0, 6)]  # the small one listed first: order must not matter
    m = class_map(anns, 8, 8, LABELS)
    want = np.zeros((8, 8), dtype=np.int64)
    want[0:6, 0:6] = 1
    want[2:4, 2:4] = 2
    assert (m == want).all()


def test_class_map_overlap_ignore_and_crowd():
    anns = [square(7, 2, 2, 2), square(3, 0, 0, 6), square(3, 6, 6, 2, crowd=1)]
    m = class_map(anns, 8, 8, LABELS, ignore_index=255, overlap="ignore")
    assert (m[2:4, 2:4] == 255).all() and m[0, 0] == 1 and (m[6:8, 6:8] == 255).all() and m[7, 0] == 0
    with pytest.raises(ValueError, match="overlap"):
        class_map(anns, 8, 8, LABELS, overlap="largest")


def test_crop_pads_outside_the_image_with_ignored_pixels():
    image = np.full((4, 4, 3), 9, dtype=np.uint8)
    cmap = np.ones((4, 4), dtype=np.int64)
    im, m = crop(image, cmap, 0, 0, (4, 4), 255)
    assert (m[2:, 2:] == 1).all() and (m[:2] == 255).all() and (m[:, :2] == 255).all()
    assert (im[2:, 2:] == 9).all() and (im[:2] == 0).all()


def test_class_balanced_patches_share_and_majority_cap():
    counts = np.array([[10_000, 100, 0], [20_000, 0, 5], [5_000, 50, 1]])
    sampler = ClassBalancedPatches(counts, patch_size=8, majority_cap=0.2)
    assert sampler.class_probabilities() == pytest.approx([0.2, 0.4, 0.4])
    rng = np.random.default_rng(0)
    draws = [sampler.draw(rng) for _ in range(20_000)]
    classes = np.bincount([c for _, c in draws], minlength=3) / len(draws)
    assert classes == pytest.approx([0.2, 0.4, 0.4], abs=0.015)
    # images drawn in proportion to their pixels of the class: class 2 lives in images 1 and 2 (5:1)
    img_for_2 = np.bincount([i for i, c in draws if c == 2], minlength=3)
    assert img_for_2[0] == 0 and img_for_2[1] / img_for_2.sum() == pytest.approx(5 / 6, abs=0.02)
    # a cap above the equal share leaves the shares equal
    assert ClassBalancedPatches(counts, majority_cap=0.9).class_probabilities() == pytest.approx([1 / 3] * 3)


def test_random_patches_follow_the_pixel_distribution():
    counts = np.array([[300, 0], [100, 0]])
    sampler = RandomPatches(counts, patch_size=[4, 6], patches_per_epoch=7)
    rng = np.random.default_rng(1)
    images = np.bincount([sampler.draw(rng)[0] for _ in range(8000)], minlength=2) / 8000
    assert images == pytest.approx([0.75, 0.25], abs=0.02)
    assert sampler.patch_size == (4, 6) and sampler.patches_per_epoch == 7


def test_asymmetric_mixup_keeps_rare_labels():
    mix = AsymmetricMixup(alpha=0.2, margin=0.1, rare_classes=[3])
    a = np.array([[3, 1, 3, 0]])
    b = np.array([[1, 3, 3, 2]])
    # lam = 0.7: pixel 0 has rare a at 0.7 > 0.1 -> weight 1; pixel 1 rare b at 0.3 -> weight 0;
    # pixel 2 both rare: the larger weight (a) wins -> 1; pixel 3 no rare -> lam
    assert mix.pixel_weight(0.7, a, b).tolist() == [[1.0, 0.0, 1.0, pytest.approx(0.7)]]
    # below the margin the rare label does not take over
    assert mix.pixel_weight(0.95, a, b)[0, 1] == pytest.approx(0.95)
    assert Mixup().pixel_weight(0.7, a, b).tolist() == [[pytest.approx(0.7)] * 4]


def test_mixup_blends_images_and_unions_ignored_pixels():
    rng = np.random.default_rng(0)
    lam = np.random.default_rng(0).beta(0.4, 0.4)
    img_a, img_b = np.full((1, 2, 3), 200, np.uint8), np.full((1, 2, 3), 100, np.uint8)
    image, ma, mb, w = Mixup(alpha=0.4)(img_a, np.array([[1, 255]]), img_b, np.array([[2, 0]]), rng, 255)
    assert image[0, 0, 0] == round(lam * 200 + (1 - lam) * 100)
    assert ma.tolist() == [[1, 255]] and mb.tolist() == [[2, 255]] and w[0, 0] == pytest.approx(lam)


def test_asymmetric_augmentation_probability():
    aug = AsymmetricAugmentation(background_p=0.25, classes=[2])
    with_rare, background = np.array([[0, 2]]), np.array([[0, 1]])
    rng = np.random.default_rng(0)
    assert all(aug.augment(with_rare, rng, 255) for _ in range(100))
    share = np.mean([aug.augment(background, rng, 255) for _ in range(8000)])
    assert share == pytest.approx(0.25, abs=0.02)


@pytest.fixture
def source(tiny_shapes):
    return CocoDetection(tiny_shapes / "annotations/train.json", tiny_shapes / "train")


def test_whole_image_items(source):
    ds = SegmentationDataset(source)
    image, target = ds[0]
    info = ds.images[0]
    assert image.shape == (3, info["height"], info["width"]) and target["mask"].shape == image.shape[1:]
    values = set(torch.unique(target["mask"]).tolist())
    assert values <= set(range(source.label_map.num_classes)) and values - {0}


def test_patch_items_are_seeded_and_hard_examples_come_first(source):
    counts = image_pixel_counts(source)
    assert counts.shape == (len(source.images), source.label_map.num_classes) and counts[:, 1:].sum() > 0
    sampler = ClassBalancedPatches(counts, patch_size=32, patches_per_epoch=10)
    ds = SegmentationDataset(source, build_albumentations([{"type": "HorizontalFlip", "p": 0.5}]),
                             patch_sampler=sampler, seed=5)
    assert len(ds) == 10
    image, target = ds[3]
    again_image, again = ds[3]
    assert image.shape == (3, 32, 32) and torch.equal(image, again_image) and torch.equal(target["mask"], again["mask"])
    spec = tuple(target["patch"].tolist())
    if spec[3] > 0:  # the centre pixel has the drawn class (before augmentation)
        raw_image, raw_map, _ = ds.raw_item(0, 3)
        assert raw_map[16, 16] == spec[3]
    ds.set_hard(1, [spec])
    ds.set_epoch(1)
    assert tuple(ds[0][1]["patch"].tolist()) == spec
    state = ds.state_dict()
    fresh = SegmentationDataset(source, patch_sampler=sampler, seed=5)
    fresh.load_state_dict(state)
    assert fresh.spec(1, 0) == spec


def test_mixup_items_carry_two_maps(source):
    ds = SegmentationDataset(source, mixup=Mixup(alpha=0.4, p=1.0), seed=1)
    _, target = ds[2]
    assert {"mask", "mask_b", "mix"} <= set(target) and target["mix"].shape == target["mask"].shape
    assert ((target["mix"] >= 0) & (target["mix"] <= 1)).all()
