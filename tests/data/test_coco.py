import hashlib
import json
import math

import cv2
import numpy as np
import pytest
import torch

from detimb.data.coco import CocoDetection, collate
from detimb.data.coco_validate import validate_coco
from detimb.errors import DatasetError


def make_coco(tmp_path, images=None, annotations=None, categories=None, size=(40, 30)):
    """A small COCO file with real image files; category ids deliberately not contiguous."""
    img_dir = tmp_path / "img"
    img_dir.mkdir(exist_ok=True)
    images = images if images is not None else [{"id": 1, "file_name": "a.png", "width": size[0], "height": size[1]},
                                                {"id": 2, "file_name": "b.png", "width": size[0], "height": size[1]}]
    for im in images:
        if isinstance(im, dict) and "file_name" in im and not (img_dir / im["file_name"]).exists():
            w, h = im.get("width", size[0]), im.get("height", size[1])
            if isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0 and ".." not in im["file_name"]:
                cv2.imwrite(str(img_dir / im["file_name"]), np.full((h, w, 3), 128, np.uint8))
    data = {
        "images": images,
        "annotations": annotations if annotations is not None else [
            {"id": 10, "image_id": 1, "category_id": 7, "bbox": [2, 3, 10, 8], "area": 80, "iscrowd": 0,
             "segmentation": [[2, 3, 12, 3, 12, 11, 2, 11]]},
            {"id": 11, "image_id": 1, "category_id": 3, "bbox": [20, 5, 5, 5], "area": 25, "iscrowd": 0,
             "segmentation": [[20, 5, 25, 5, 25, 10, 20, 10]]},
            {"id": 12, "image_id": 1, "category_id": 3, "bbox": [0, 0, 4, 4], "area": 16, "iscrowd": 1,
             "segmentation": [[0, 0, 4, 0, 4, 4, 0, 4]]},
        ],
        "categories": categories if categories is not None else [{"id": 7, "name": "truck"},
                                                                  {"id": 3, "name": "car"}],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path, img_dir


def test_targets_follow_torchvision_format_with_contiguous_labels(tmp_path):
    path, img_dir = make_coco(tmp_path)
    ds = CocoDetection(path, img_dir, with_masks=True)
    assert ds.label_map.coco_ids == (3, 7) and ds.label_map.names == ("car", "truck")
    image, target = ds[0]
    assert image.shape == (3, 30, 40) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    # xywh [2, 3, 10, 8] -> xyxy [2, 3, 12, 11]; crowd annotation left out of training targets
    assert target["boxes"].tolist() == [[2, 3, 12, 11], [20, 5, 25, 10]]
    assert target["labels"].tolist() == [2, 1] and target["labels"].dtype == torch.int64
    assert target["masks"].shape == (2, 30, 40) and target["masks"].dtype == torch.uint8
    assert int(target["masks"][0].sum()) == pytest.approx(80, abs=25)
    assert int(target["image_id"]) == 1


def test_empty_images_kept_by_default_and_droppable(tmp_path):
    path, img_dir = make_coco(tmp_path)
    assert len(CocoDetection(path, img_dir)) == 2
    ds = CocoDetection(path, img_dir, keep_empty=False)
    assert len(ds) == 1
    _, target = CocoDetection(path, img_dir, with_masks=True)[1]
    assert target["boxes"].shape == (0, 4) and target["masks"].shape == (0, 30, 40)


def test_horizontal_flip_moves_boxes_and_is_seeded(tmp_path):
    path, img_dir = make_coco(tmp_path)
    ds = CocoDetection(path, img_dir, transforms=[{"type": "HorizontalFlip", "p": 1.0}])
    _, target = ds[0]
    # x0' = W - x1, x1' = W - x0 with W = 40
    assert target["boxes"].tolist() == [[28, 3, 38, 11], [15, 5, 20, 10]]
    ds = CocoDetection(path, img_dir, transforms=[{"type": "HorizontalFlip", "p": 0.5}], seed=1)
    draws = [ds[0][1]["boxes"][0, 0].item() for _ in range(3)]
    assert len(set(draws)) == 1  # same (seed, epoch, index): same augmentation
    flips = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        flips.add(ds[0][1]["boxes"][0, 0].item())
    assert flips == {2.0, 28.0}


def test_unknown_transform_is_a_config_error(tmp_path):
    path, img_dir = make_coco(tmp_path)
    with pytest.raises(Exception, match="did you mean 'HorizontalFlip'"):
        CocoDetection(path, img_dir, transforms=[{"type": "HorizontalFlp"}])


def test_collate_keeps_lists(tmp_path):
    path, img_dir = make_coco(tmp_path)
    ds = CocoDetection(path, img_dir)
    images, targets = collate([ds[0], ds[1]])
    assert len(images) == len(targets) == 2


def test_out_of_bounds_boxes_are_clipped_and_counted_without_touching_the_file(tmp_path):
    anns = [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [35, 25, 10, 10]},
            {"id": 2, "image_id": 1, "category_id": 7, "bbox": [50, 50, 5, 5]},
            {"id": 3, "image_id": 1, "category_id": 3, "bbox": [-2, 1, 4, 4]}]
    path, img_dir = make_coco(tmp_path, annotations=anns)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    ds = CocoDetection(path, img_dir)
    assert ds.records.repairs == {"clipped_boxes": 2, "dropped_boxes": 1, "renumbered_annotation_ids": 0}
    assert "2 boxes clipped to their image, 1 wholly outside dropped" in ds.records.warnings[0]
    assert ds[0][1]["boxes"].tolist() == [[35, 25, 40, 30], [0, 1, 2, 5]]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    with pytest.raises(DatasetError, match=r"annotations\[0\] \(id 1\).*outside its image a.png"):
        validate_coco(path, img_dir, out_of_bounds="error")


BAD_CASES = {
    "no_images_key": (lambda d: d.pop("images"), r"missing or non-list 'images'"),
    "zero_width": (lambda d: d["images"][0].update(width=0), r"images\[0\] \(id 1\) has width/height 0/30"),
    "nan_bbox": (lambda d: d["annotations"][0].update(bbox=[1, 2, math.nan, 3]), r"annotations\[0\] \(id 10\) bbox"),
    "zero_box": (lambda d: d["annotations"][0].update(bbox=[1, 2, 0, 3]), r"width or height <= 0"),
    "missing_bbox": (lambda d: d["annotations"][0].pop("bbox"), r"annotations\[0\] \(id 10\) has no 'bbox'"),
    "unknown_category": (lambda d: d["annotations"][0].update(category_id=99), r"category_id 99, which is not"),
    "unknown_image": (lambda d: d["annotations"][0].update(image_id=99), r"image_id 99, which is not"),
    "duplicate_image": (lambda d: d["images"][1].update(id=1), r"images\[1\] repeats id 1"),
    "duplicate_ann": (lambda d: d["annotations"][1].update(id=10), r"annotations\[1\] repeats id 10"),
    "duplicate_cat": (lambda d: d["categories"][1].update(id=7), r"categories\[1\] repeats id 7"),
    "escaping_name": (lambda d: d["images"][0].update(file_name="../../etc/passwd"), r"escapes the image root"),
    "missing_file": (lambda d: d["images"][0].update(file_name="nothere.png"), r"nothere.png does not exist"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_malformed_coco_is_reported_with_file_record_and_fix(tmp_path, case):
    path, img_dir = make_coco(tmp_path)
    data = json.loads(path.read_text())
    mutate, pattern = BAD_CASES[case]
    mutate(data)
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=pattern) as err:
        validate_coco(path, img_dir)
    assert str(path) in str(err.value) and "Fix:" in str(err.value)


def test_invalid_json_and_missing_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"images": [}')
    with pytest.raises(DatasetError, match=r"broken.json: not valid JSON \(line 1"):
        validate_coco(path, tmp_path)
    with pytest.raises(DatasetError, match="annotation file not found"):
        validate_coco(tmp_path / "none.json", tmp_path)


def test_corrupt_or_resized_image_is_reported_when_read(tmp_path):
    path, img_dir = make_coco(tmp_path)
    (img_dir / "a.png").write_bytes(b"not a png")
    ds = CocoDetection(path, img_dir)
    with pytest.raises(DatasetError, match=r"image id 1 file .*a.png is missing or cannot be decoded"):
        ds[0]
    cv2.imwrite(str(img_dir / "a.png"), np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(DatasetError, match="is 10x10 but the record says 40x30"):
        ds[0]


def test_val_split_with_foreign_category_is_refused(tmp_path):
    path, img_dir = make_coco(tmp_path)
    train = CocoDetection(path, img_dir)
    other = tmp_path / "other"
    other.mkdir()
    path2, img_dir2 = make_coco(other, categories=[{"id": 7, "name": "truck"}, {"id": 3, "name": "car"},
                                                   {"id": 5, "name": "bus"}])
    with pytest.raises(DatasetError, match=r"category ids \[5\] are not in the training set"):
        CocoDetection(path2, img_dir2, label_map=train.label_map)


def test_an_evaluation_subset_is_evenly_spaced_and_its_ground_truth_is_only_theirs(tmp_path):
    images = [{"id": i, "file_name": f"{i}.png", "width": 40, "height": 30} for i in range(1, 8)]
    annotations = [{"id": 100 + i, "image_id": i, "category_id": 7, "bbox": [2, 3, 10, 8], "area": 80, "iscrowd": 0}
                   for i in range(1, 8)]
    path, img_dir = make_coco(tmp_path, images=images, annotations=annotations,
                              categories=[{"id": 7, "name": "truck"}])
    ds = CocoDetection(path, img_dir, max_images=3)
    assert [im["id"] for im in ds.images] == [1, 4, 7]  # indices 0, 3, 6 of 7
    assert sorted(ds.coco.getImgIds()) == [1, 4, 7] and sorted(ds.coco.getAnnIds()) == [101, 104, 107]
    assert len(CocoDetection(path, img_dir, max_images=50).coco.getImgIds()) == 7  # more than there are: all
