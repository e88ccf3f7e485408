"""The decoded-image cache: the same tensors, read without decoding by a later run, a
changed file decoded again, and a bound that is too small refused."""

import os

import cv2
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from detimb.config.schema import DataConfig
from detimb.data import coco as coco_module
from detimb.data.coco import CocoDetection
from detimb.data.image_cache import DecodedImageCache
from detimb.data.loader import LoaderSettings, build_datasets, build_loader
from detimb.data.pixels import RGB
from detimb.errors import ConfigError


def _data(tiny_shapes, **cache):
    """``data`` as the schema gives it (every default), with these splits and cache settings."""
    return OmegaConf.merge(OmegaConf.structured(DataConfig), {
        "train": {"ann_file": str(tiny_shapes / "annotations/train.json"), "img_dir": str(tiny_shapes / "train"),
                  "transforms": [{"type": "HorizontalFlip", "p": 0.5}]},
        "val": {"ann_file": str(tiny_shapes / "annotations/val.json"), "img_dir": str(tiny_shapes / "val")},
        "check_images": False, **cache})


def _items(dataset):
    return [dataset[i] for i in range(len(dataset))]


def _same(a, b):
    return all(torch.equal(x[0], y[0]) and torch.equal(x[1]["boxes"], y[1]["boxes"]) for x, y in zip(a, b))


def test_cached_images_give_identical_items_and_a_later_run_reads_without_decoding(tiny_shapes, tmp_path,
                                                                                    monkeypatch):
    plain, _ = build_datasets(_data(tiny_shapes), False, seed=1)
    data = _data(tiny_shapes, cache="disk", cache_dir=str(tmp_path / "cache"))
    first, _ = build_datasets(data, False, seed=1)
    expected = _items(plain)
    assert _same(_items(first), expected)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == len(first)

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(coco_module.cv2, "imread", no_decoding)
    second, _ = build_datasets(data, False, seed=1)  # a later run on the same data
    assert _same(_items(second), expected)
    workers = build_loader(second, batch_size=4, settings=LoaderSettings(num_workers=2))  # shared by workers
    got = [(image, target) for images, targets in workers for image, target in zip(images, targets)]
    assert all(torch.equal(image, expected[i][0]) for i, (image, _) in enumerate(got))


def test_a_changed_file_is_decoded_again_and_its_old_entry_removed(tmp_path):
    from tests.data.test_coco import make_coco

    path, img_dir = make_coco(tmp_path)
    cache = DecodedImageCache(tmp_path / "cache", RGB, 2**30)
    ds = CocoDetection(path, img_dir, cache=cache)
    before = ds[0][0]
    assert float(before.mean()) == pytest.approx(128 / 255)
    image = img_dir / "a.png"
    cv2.imwrite(str(image), np.full((30, 40, 3), 200, np.uint8))
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a later modification time, whatever the clock
    after = ds[0][0]
    assert float(after.mean()) == pytest.approx(200 / 255)
    assert len(list((tmp_path / "cache").glob(f"{cache._stem(image)}-*.npy"))) == 1


def test_a_bound_too_small_is_refused_with_the_numbers(tiny_shapes, tmp_path):
    data = _data(tiny_shapes, cache="disk", cache_dir=str(tmp_path / "cache"), cache_max_gb=1e-6)
    with pytest.raises(ConfigError, match=r"data.cache: the \d+ training and validation images decode to .* over"
                                          r" data.cache_max_gb .*Fix: raise data.cache_max_gb"):
        build_datasets(data, False, seed=0)


def test_ram_lives_in_shared_memory_and_disk_in_the_cache_folder(tmp_path, monkeypatch):
    from detimb.data import image_cache

    monkeypatch.setenv("DETIMB_CACHE_DIR", str(tmp_path))
    (tmp_path / "shm").mkdir()
    monkeypatch.setattr(image_cache, "SHARED_MEMORY", tmp_path / "shm")  # /dev/shm, without writing there
    settings = OmegaConf.create({"cache": "disk", "cache_dir": None, "cache_max_gb": 1.0})
    assert DecodedImageCache.from_config(settings, RGB).folder == tmp_path / "decoded"
    settings.cache = "ram"
    assert DecodedImageCache.from_config(settings, RGB).folder.parent == tmp_path / "shm"
    settings.cache = None
    assert DecodedImageCache.from_config(settings, RGB) is None
