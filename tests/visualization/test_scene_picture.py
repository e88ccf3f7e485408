"""A scene's picture: 8-bit values as they are in any type, wider ranges stretched per band."""

from __future__ import annotations

import numpy as np

from detimb.visualization.scene import display_uint8


def test_values_within_0_255_are_shown_as_an_rgb_model_reads_them():
    planes = np.array([[[0, 17], [128, 255]]] * 3)
    for dtype in (np.uint8, np.uint16, np.float32):
        assert np.array_equal(display_uint8(planes.astype(dtype)), planes.astype(np.uint8))


def test_a_12_bit_band_is_stretched_from_its_2nd_to_its_98th_percentile():
    band = np.arange(0, 4096, 4, dtype=np.uint16).reshape(1, 32, 32)  # 1024 values 0..4092
    lo, hi = np.percentile(band.astype(np.float64), [2, 98])
    out = display_uint8(band)
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 255
    mid = band[0, 16, 0]  # 2048, half way between lo and hi
    assert out[0, 16, 0] == round((mid - lo) / (hi - lo) * 255)
    # dividing by the type's maximum would have shown the top value as 4092 / 65535 * 255 = 16
    assert out[0, -1, -1] == 255


def test_non_finite_values_are_black_and_a_flat_band_does_not_divide_by_zero():
    band = np.full((1, 4, 4), 1000.0, dtype=np.float32)
    band[0, 0, 0] = np.nan
    out = display_uint8(band)
    assert out[0, 0, 0] == 0 and out.dtype == np.uint8
    assert np.array_equal(display_uint8(np.full((3, 2, 2), np.nan)), np.zeros((3, 2, 2), dtype=np.uint8))
