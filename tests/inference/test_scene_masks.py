"""Masks held as crops: the scene RLE against pycocotools' encoding of the whole raster,
unions against OR, polygons against GDAL's rasterisation and counted pixels."""

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from rasterio.features import rasterize
from rasterio.transform import Affine, from_origin

from detimb.inference.scene_masks import CropMask, masks_from_output, polygons, scene_rle, union


def placed(bits, x0, y0, height, width):
    full = np.zeros((height, width), dtype=np.uint8)
    full[y0:y0 + bits.shape[0], x0:x0 + bits.shape[1]] = bits
    return full


@pytest.mark.parametrize("seed", range(30))
def test_scene_rle_equals_pycocotools_on_the_whole_raster(seed):
    rng = np.random.default_rng(seed)
    height, width = int(rng.integers(1, 40)), int(rng.integers(1, 40))
    h, w = int(rng.integers(1, height + 1)), int(rng.integers(1, width + 1))
    y0, x0 = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
    if seed % 3 == 0:  # full-height crops: runs go on from one column's bottom to the next one's top
        h, y0 = height, 0
    bits = (rng.random((h, w)) < rng.choice([0.2, 0.5, 0.95])).astype(np.uint8)
    mask = CropMask.from_bits(bits, x0, y0)
    if mask is None:
        return
    want = mask_utils.encode(np.asfortranarray(placed(bits, x0, y0, height, width)))
    got = scene_rle(mask, height, width)
    assert got["size"] == [height, width] and got["counts"] == want["counts"].decode("ascii")


def test_a_full_scene_mask_and_a_crop_outside_the_scene():
    ones = np.ones((4, 5), dtype=np.uint8)
    assert scene_rle(CropMask.from_bits(ones, 0, 0), 4, 5)["counts"] == \
        mask_utils.encode(np.asfortranarray(ones))["counts"].decode("ascii")
    with pytest.raises(ValueError, match="leaves the 5 x 4 scene"):
        scene_rle(CropMask.from_bits(ones, 1, 0), 4, 5)


def test_crops_are_trimmed_and_empty_masks_are_none():
    bits = np.zeros((10, 12), dtype=np.uint8)
    bits[3:5, 7:9] = 1
    mask = CropMask.from_bits(bits, 100, 200)
    assert (mask.x0, mask.y0, mask.width, mask.height) == (107, 203, 2, 2) and mask.bits().sum() == 4
    assert CropMask.from_bits(np.zeros((3, 3), dtype=np.uint8), 0, 0) is None


def test_union_is_the_or_of_the_placed_masks():
    rng = np.random.default_rng(0)
    parts, full = [], np.zeros((60, 70), dtype=np.uint8)
    for _ in range(4):
        h, w = rng.integers(3, 20, 2)
        y0, x0 = rng.integers(0, 40), rng.integers(0, 50)
        bits = (rng.random((h, w)) < 0.6).astype(np.uint8)
        bits[0, 0] = 1
        parts.append(CropMask.from_bits(bits, int(x0), int(y0)))
        full |= placed(bits, x0, y0, 60, 70)
    merged = union(parts)
    assert np.array_equal(placed(merged.bits(), merged.x0, merged.y0, 60, 70), full)


def test_polygons_keep_holes_and_map_through_the_transform():
    bits = np.zeros((7, 7), dtype=np.uint8)
    bits[1:6, 1:6] = 1
    bits[3, 3] = 0  # a one-pixel hole
    bits[0, 6] = 1  # a separate pixel, touching the square only at a corner (4-connectivity)
    mask = CropMask.from_bits(bits, 10, 20)  # trimmed: the crop starts at (11, 20)
    geometry = polygons(mask)
    import shapely

    shape = shapely.geometry.shape(geometry)
    assert geometry["type"] == "MultiPolygon" and len(shape.geoms) == 2
    square = max(shape.geoms, key=lambda p: p.area)
    assert square.area == 24 and len(square.interiors) == 1 and square.bounds == (11, 21, 16, 26)
    assert shape.area == bits.sum()
    # rasterised back by GDAL (pixel centres), the polygons give the same pixels
    back = rasterize([geometry], out_shape=(40, 40), transform=Affine.identity())
    assert np.array_equal(back, placed(bits, 10, 20, 40, 40))
    # scene pixel (x, y) -> map (400000 + 0.1 x, 3300000 - 0.1 y)
    mapped = shapely.geometry.shape(polygons(mask, from_origin(400000.0, 3300000.0, 0.1, 0.1)))
    assert mapped.area == pytest.approx(bits.sum() * 0.01)
    assert mapped.bounds == pytest.approx((400001.1, 3299997.4, 400001.7, 3299998.0))


def test_model_masks_become_scene_crops_and_overviews_are_scaled_back():
    probs = torch.zeros(2, 1, 8, 8)
    probs[0, 0, 2:4, 1:5] = 0.9
    probs[0, 0, 5, 5] = 0.5  # not above the threshold
    crops = masks_from_output(probs, 0.5, 100, 50, (1000, 1000))
    assert crops[1] is None
    assert (crops[0].x0, crops[0].y0, crops[0].width, crops[0].height) == (101, 52, 4, 2)
    big = masks_from_output(probs[:1], 0.5, 0, 0, (1000, 1000), scale=(2.0, 3.0))[0]  # an overview at 1/2, 1/3
    assert (big.x0, big.y0, big.width, big.height) == (2, 6, 8, 6) and big.bits().all()
    # cut to the scene: a padded tile at (100, 50) of a 103 x 53 scene keeps columns 101-102, row 52
    cut = masks_from_output(probs[:1], 0.5, 100, 50, (103, 53))[0]
    assert (cut.x0, cut.y0, cut.width, cut.height) == (101, 52, 2, 1)
    assert masks_from_output(probs[:1], 0.5, 100, 50, (101, 53))[0] is None  # nothing inside
    assert masks_from_output(torch.zeros(0, 1, 8, 8), 0.5, 0, 0, (8, 8)) == []
