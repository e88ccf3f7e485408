"""One reader for every image the API takes: a PIL image of any mode reads as its file does."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from detimb.data.pixels import load_image
from detimb.errors import InputError


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_copies_of_8_bit_pixels_of_another_type_read_the_same_as_paths_and_pil_images(tmp_path, dtype):
    """The same 0-255 pixels as uint8, uint16 (PNG) and float32 (TIFF) files read alike, as
    paths and as PIL images, and as sliced inference reads scenes (before, a 16-bit copy
    read as its top 8 bits: near black)."""
    values = (np.arange(48 * 40).reshape(48, 40) * 7 % 256).astype(np.uint8)
    rgb = np.stack([values, 255 - values, values // 2], axis=2)
    cv2.imwrite(str(tmp_path / "u8.png"), rgb[..., ::-1])
    other = tmp_path / ("copy.png" if dtype == "uint16" else "copy.tif")
    # uncompressed: OpenCV 4.9 (the floor) writes float TIFFs as lossy SGILOG by default
    cv2.imwrite(str(other), rgb[..., ::-1].astype(dtype), [cv2.IMWRITE_TIFF_COMPRESSION, 1])
    assert np.array_equal(load_image(other), load_image(tmp_path / "u8.png"))
    assert np.array_equal(load_image(other), rgb)
    if dtype == "uint16":
        grey = tmp_path / "g16.png"
        cv2.imwrite(str(grey), values.astype(np.uint16))
        assert Image.open(grey).mode.startswith("I;16")
        assert np.array_equal(load_image(Image.open(grey)), load_image(grey))


def test_deeper_values_are_refused_by_name(tmp_path):
    deep = (np.arange(48 * 40).reshape(48, 40) * 31 % 65536).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    with pytest.raises(InputError, match=r"deep.png: uint16 values span 0 to \d+, outside the 0-255"):
        load_image(tmp_path / "deep.png")
    with pytest.raises(InputError, match=r"mode I;16.*: uint16 values span 0 to \d+, outside the 0-255"):
        load_image(Image.open(tmp_path / "deep.png"))


def test_float_and_integer_pil_images_keep_their_scale():
    ramp = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    read = load_image(Image.fromarray(ramp, mode="F"))
    assert read.shape == (8, 8, 3) and read[..., 1].tolist() == (ramp * 255).round().astype(np.uint8).tolist()
    assert load_image(Image.fromarray(np.full((4, 4), 200, np.int32), mode="I"))[0, 0].tolist() == [200] * 3
    with pytest.raises(InputError, match=r"mode-F .* values in \[0, 1\]; this one spans 0 to 255"):
        load_image(Image.fromarray(ramp * 255, mode="F"))
    with pytest.raises(InputError, match="mode-I .* 0-255"):
        load_image(Image.fromarray(np.full((4, 4), 4000, np.int32), mode="I"))


def test_an_empty_image_is_a_named_error():
    with pytest.raises(InputError, match="0 x 0 pixels"):
        load_image(np.zeros((0, 0, 3), np.uint8))
    with pytest.raises(InputError, match="0 x 5 pixels"):
        load_image(Image.new("RGB", (5, 0)))


def test_a_loaders_uint8_items_keep_their_bytes():
    from detimb.data.pixels import to_chw_tensor

    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    compact = to_chw_tensor(rgb, keep_uint8=True)
    assert compact.dtype == torch.uint8 and compact.shape == (3, 5, 7) and compact.is_contiguous()
    assert torch.equal(compact, torch.from_numpy(rgb).permute(2, 0, 1))
    assert torch.equal(to_chw_tensor(rgb), torch.from_numpy(rgb).permute(2, 0, 1).float() / 255)


def test_float_rasters_without_a_stated_range_are_read_with_a_warning():
    from detimb.data.pixels import RGB, PixelSpec

    unit = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32)  # scaled to [0, 1]
    with pytest.warns(UserWarning, match=r"scene.tif: float values within \[0, 1\], read on the 0-255 scale"):
        assert RGB.convert(unit, "scene.tif").max() <= 1 / 255
    with pytest.warns(UserWarning, match="float values read as they are: the model states no range"):
        PixelSpec(channels=3, bands=(1, 2, 3)).convert(unit, "bands.tif")


def test_a_training_image_stored_in_16_bits_reads_as_its_8_bit_copy(tmp_path):
    import json

    from detimb.data.coco import CocoDetection
    from detimb.errors import DatasetError

    rgb = np.random.default_rng(1).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    copies = (("u8.png", rgb), ("u16.png", rgb.astype(np.uint16)), ("deep.png", rgb.astype(np.uint16) * 200))
    for name, values in copies:
        cv2.imwrite(str(tmp_path / name), values[..., ::-1])
        (tmp_path / f"{name}.json").write_text(json.dumps({
            "images": [{"id": 1, "file_name": name, "width": 24, "height": 20}], "annotations": [],
            "categories": [{"id": 1, "name": "a"}]}))
    item = lambda name: CocoDetection(tmp_path / f"{name}.json", tmp_path)[0][0]  # noqa: E731
    assert torch.equal(item("u16.png"), item("u8.png"))
    with pytest.raises(DatasetError, match=r"deep.png.json: image id 1 file .*deep.png: uint16 values span"):
        item("deep.png")
