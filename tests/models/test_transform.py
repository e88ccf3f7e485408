"""Model transforms take a loader's uint8 images: divided by 255 on the model's side, with
the values the float path gives, for every detector and the segmentation model."""

import numpy as np
import pytest
import torch

from detimb.data.pixels import to_chw_tensor
from detimb.models import build_detector
from detimb.models.transform import DetectionTransform, SegmentationTransform, float_image
from tests.conftest import write_config


def test_float_image_divides_uint8_by_255_and_keeps_floats():
    rgb = np.random.default_rng(0).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    as_uint8 = to_chw_tensor(rgb, keep_uint8=True)
    assert torch.equal(float_image(as_uint8), to_chw_tensor(rgb))  # bit for bit the worker's float path
    floats = torch.rand(4, 6, 5)
    assert float_image(floats) is floats


def _pair(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rgb = np.random.default_rng(seed).integers(0, 256, (40, 52, 3), dtype=np.uint8)
    return to_chw_tensor(rgb, keep_uint8=True), to_chw_tensor(rgb)


def test_the_transforms_normalise_uint8_as_float():
    compact, floats = _pair()
    detection = DetectionTransform(True, 64, 96, [0.4, 0.5, 0.6], [0.2, 0.25, 0.3])
    assert torch.equal(detection([compact])[0].tensors, detection([floats])[0].tensors)
    segmentation = SegmentationTransform(True, 64, 96, [0.4, 0.5, 0.6], [0.2, 0.25, 0.3])
    out = segmentation([compact])[0]
    assert out.dtype == torch.float32 and torch.equal(out, segmentation([floats])[0])


@pytest.mark.parametrize("detector", ["faster_rcnn", "retinanet", "fcos", "ssd", "mask_rcnn"])
def test_every_detector_predicts_the_same_from_uint8_and_float_images(detector, tiny_shapes, tmp_path):
    from detimb.config import load_config
    from detimb.data.label_map import LabelMap

    cfg = load_config(write_config(tmp_path, tiny_shapes, detector))
    torch.manual_seed(0)
    model = build_detector(cfg.model, LabelMap((1, 2), ("a", "b"))).eval()
    compact, floats = _pair(1)
    with torch.no_grad():
        a, b = model([compact])[0], model([floats])[0]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
