"""One reader for every image the API takes: a PIL image of any mode reads as its file does."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from detimb.data.pixels import load_image
from detimb.errors import InputError


@pytest.fixture
def grey16(tmp_path):
    values = (np.arange(48 * 40).reshape(48, 40) * 31 % 65536).astype(np.uint16)
    path = tmp_path / "g16.png"
    cv2.imwrite(str(path), values)
    return path, values


def test_a_16_bit_grey_png_reads_alike_as_a_path_and_as_a_pil_image(grey16):
    path, values = grey16
    from_path, from_pil = load_image(path), load_image(Image.open(path))
    assert Image.open(path).mode.startswith("I;16")
    assert np.array_equal(from_path, from_pil)
    assert np.array_equal(from_pil[..., 0], (values >> 8).astype(np.uint8))  # the top 8 bits, as OpenCV reads it


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
