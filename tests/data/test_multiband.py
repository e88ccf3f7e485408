"""4-band 16-bit GeoTIFFs: trained on with their bands, read at inference with the checkpoint's scaling."""

import json

import cv2
import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from detimb.api import Predictor, evaluate
from detimb.config import load_config
from detimb.data.coco import CocoDetection
from detimb.data.pixels import PixelSpec
from detimb.inference.sliced import SliceSettings, sliced_predict
from detimb.engine.trainer import Trainer
from detimb.errors import DatasetError
from detimb.models.backbones import adapt_input_weight
from tests.conftest import write_config

FOUR = {"data": {"bands": [1, 2, 3, 4], "scale": [0, 65535]},
        "model": {"in_channels": 4, "transform": {"image_mean": [0.485, 0.456, 0.406, 0.45],
                                                  "image_std": [0.229, 0.224, 0.225, 0.226]}}}


def write_tif(path, pixels):
    bands, h, w = pixels.shape
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=bands, dtype=pixels.dtype,
                       crs="EPSG:32617", transform=from_origin(400000.0, 3300000.0, 0.1, 0.1)) as dst:
        dst.write(pixels)


@pytest.fixture(scope="module")
def four_band(tiny_shapes, tmp_path_factory):
    """The tiny shapes set as 4-band uint16 GeoTIFFs: RGB x 257 and a fourth band (their mean)."""
    root = tmp_path_factory.mktemp("fourband")
    for split in ("train", "val"):
        data = json.loads((tiny_shapes / "annotations" / f"{split}.json").read_text())
        (root / split).mkdir()
        for img in data["images"]:
            rgb = cv2.cvtColor(cv2.imread(str(tiny_shapes / split / img["file_name"])), cv2.COLOR_BGR2RGB)
            bands = rgb.transpose(2, 0, 1).astype(np.uint16) * 257
            write_tif(root / split / (img["file_name"].rsplit(".", 1)[0] + ".tif"),
                      np.concatenate([bands, bands.mean(0, keepdims=True).astype(np.uint16)]))
            img["file_name"] = img["file_name"].rsplit(".", 1)[0] + ".tif"
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / f"{split}.json").write_text(json.dumps(data))
    return root


def test_the_dataset_keeps_bands_and_scales_them(four_band, tiny_shapes):
    spec = PixelSpec((1, 2, 3, 4), (0.0, 65535.0), 4)
    ds = CocoDetection(four_band / "annotations/train.json", four_band / "train", pixels=spec)
    rgb = CocoDetection(tiny_shapes / "annotations/train.json", tiny_shapes / "train")
    image, _ = ds[0]
    want, _ = rgb[0]
    assert image.shape[0] == 4 and image.dtype == torch.float32
    assert torch.allclose(image[:3], want, atol=1e-6)  # x * 257 / 65535 = x / 255
    with pytest.raises(DatasetError, match="has 4 bands but the model takes 3"):
        CocoDetection(four_band / "annotations/train.json", four_band / "train",
                      pixels=PixelSpec(None, (0.0, 65535.0), 3))[0]


def test_first_convolution_adapts_rgb_weights():
    w = torch.randn(8, 3, 3, 3)
    four = adapt_input_weight(w, 4)
    assert torch.equal(four[:, :3], w) and torch.allclose(four[:, 3], w.mean(dim=1))


def test_a_four_band_model_trains_and_infers_with_the_checkpoints_scaling(four_band, tmp_path):
    cfg = load_config(write_config(tmp_path, four_band, "faster_rcnn", **FOUR,
                                   train={"schedule": {"max_iters": 2}, "eval_interval": 2}))
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    assert trainer.model.backbone.body.stem[0].in_channels == 4
    trainer.train()
    # detimb-eval reads the validation split with the checkpoint's bands and scaling
    scored = evaluate(None, checkpoint=tmp_path / "run" / "last.pth", out=tmp_path / "eval")
    assert scored.reports["bbox"]["stats"] == trainer.evaluate(tmp_path / "again")["bbox"]["stats"]
    predictor = Predictor.from_checkpoint(tmp_path / "run" / "last.pth", score_threshold=0.0)
    assert predictor.pixels == PixelSpec((1, 2, 3, 4), (0.0, 65535.0), 4)
    scene = tmp_path / "scene.tif"
    write_tif(scene, (np.arange(4 * 96 * 128, dtype=np.uint32).reshape(4, 96, 128) % 65535).astype(np.uint16))
    seen = []

    class Recording(torch.nn.Module):
        def forward(self, images):
            seen.extend(images)
            return [{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}
                    for _ in images]

    settings = SliceSettings(size=(64, 64), overlap=0.25, pixels=predictor.pixels)
    sliced_predict(Recording(), scene, settings, torch.device("cpu"))
    raw = rasterio.open(scene).read()
    assert seen[0].shape == (4, 64, 64)
    assert torch.allclose(seen[0], torch.from_numpy(raw[:, :64, :64] / 65535.0).float())
    # the API reads the file with the same bands and scaling, and predicts on it
    read = predictor._read(scene, "RGB")
    assert read.shape == (96, 128, 4) and np.allclose(read, raw.transpose(1, 2, 0) / 65535.0, atol=1e-7)
    pred = predictor.predict(scene)
    assert pred.boxes.shape[1:] == (4,) and len(pred.boxes) == len(pred.scores)
    # an RGB model given the 4-band scene: a named error, not its first three bands
    with pytest.raises(DatasetError, match="has 4 bands but the model reads 3"):
        sliced_predict(Recording(), scene, SliceSettings(size=(64, 64)), torch.device("cpu"))


def test_config_refuses_means_that_do_not_fit_the_channels(tiny_shapes, tmp_path):
    from detimb.errors import ConfigError

    with pytest.raises(ConfigError, match="image_mean has 3 values but model.in_channels is 4"):
        load_config(write_config(tmp_path, tiny_shapes, "faster_rcnn", model={"in_channels": 4}))


@pytest.mark.parametrize("overrides, message", [
    ({"data": {"scale": [100, 0]}}, r"data.scale must be \[lo, hi\] with hi > lo, got \[100.0, 0.0\]"),
    ({"data": {"scale": [0, 1, 2]}}, r"data.scale must be \[lo, hi\]"),
    ({"data": {"bands": [0, 1, 2]}}, r"data.bands are 1-based band indices, got \[0, 1, 2\]"),
    ({"data": {"bands": [1, 2]}}, "data.bands names 2 bands but model.in_channels is 3"),
])
def test_config_refuses_impossible_input_settings_naming_the_layer(tiny_shapes, tmp_path, overrides, message):
    from detimb.errors import ConfigError

    with pytest.raises(ConfigError, match=message) as err:
        load_config(write_config(tmp_path, tiny_shapes, "faster_rcnn", **overrides))
    assert "faster_rcnn.yaml" in str(err.value)  # the layer that set it
