"""The warning a run prints when its transform enlarges small images, by hand."""

import pytest

from detimb.engine.header import upscale_factor, upscale_warning
from detimb.engine.trainer import Trainer
from detimb.models.transform import DetectionTransform, SegmentationTransform

MEAN, STD = [0.5, 0.5, 0.5], [0.2, 0.2, 0.2]


def test_the_factor_is_torchvisions_resize_rule():
    torchvision_default = DetectionTransform(True, 800, 1333, MEAN, STD)
    assert upscale_factor(torchvision_default, 128, 128) == pytest.approx(800 / 128)
    assert upscale_factor(torchvision_default, 100, 1000) == pytest.approx(1333 / 1000)  # the long side caps it
    assert upscale_factor(DetectionTransform(False, 800, 1333, MEAN, STD), 128, 128) == 1.0
    ssd = DetectionTransform(True, 300, 300, MEAN, STD, 1, fixed_size=(300, 300))
    assert upscale_factor(ssd, 128, 128) == 1.0  # SSD's fixed input is the model's own
    assert upscale_factor(SegmentationTransform(True, 512, 1024, MEAN, STD), 128, 256) == pytest.approx(4.0)


def test_one_warning_above_twice_on_the_median_with_the_fix():
    images = [{"height": 128, "width": 128}] * 3 + [{"height": 600, "width": 800}] * 2
    message = upscale_warning(DetectionTransform(True, 800, 1333, MEAN, STD), images)
    assert message is not None and "6.2x on the median (128x128 px to about 800x800)" in message
    assert "39x their pixels" in message and "--cfg-options model.transform.resize=false" in message
    assert upscale_warning(DetectionTransform(True, 200, 1333, MEAN, STD), images) is None  # 1.6x
    assert upscale_warning(DetectionTransform(True, 800, 1333, MEAN, STD), []) is None


def test_training_small_images_at_800_px_says_so(tiny_config, tmp_path, caplog):
    cfg = tiny_config("faster_rcnn", model={"transform": {"resize": True, "min_size": 160, "max_size": 160}},
                      train={"schedule": {"max_iters": 1}}, evaluation={"enabled": False})
    with caplog.at_level("WARNING", logger="detimb"):
        Trainer(cfg, tmp_path / "run", progress=False).train()
    assert sum("enlarges the training images 2.5x" in r.message for r in caplog.records) == 1
