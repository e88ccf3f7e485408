"""Tile grids, box / polygon / RLE clipping, worked out by hand."""

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from detimb.data.tiling.clip import clip_boxes, clip_polygons, crop_rle
from detimb.data.tiling.grid import Tile, starts, tile_grid


@pytest.mark.parametrize("edge,want", [("shift", [0, 410, 488]), ("pad", [0, 410, 820]), ("skip", [0, 410])])
def test_starts_for_each_edge_policy(edge, want):
    # 1000 px, tiles of 512, overlap int(0.2 * 512) = 102 px -> step 410
    assert starts(1000, 512, 102, edge) == want


@pytest.mark.parametrize("edge,want", [("shift", [(0, 300)]), ("pad", [(0, 512)]), ("skip", [])])
def test_an_axis_shorter_than_a_tile(edge, want):
    grid = tile_grid(300, 300, 512, 512, 0.2, edge)
    assert [(t.x0, t.width) for t in grid] == want


def test_exact_fit_and_pixel_overlap():
    assert starts(1024, 512, 0, "shift") == [0, 512]
    # overlap 112 px (>= 1 means pixels): step 400 -> 0, 400; 400 + 512 > 1000 -> shifted to 488
    assert starts(1000, 512, 112, "shift") == [0, 400, 488]
    grid = tile_grid(700, 1000, 512, 512, (0.0, 112.0), "shift")
    assert [(t.x0, t.y0) for t in grid] == [(0, 0), (400, 0), (488, 0), (0, 188), (400, 188), (488, 188)]
    assert all((t.width, t.height) == (512, 512) for t in grid)
    with pytest.raises(ValueError, match="overlap"):
        tile_grid(100, 100, 32, 32, 32.0)
    # a tile of no pixels is named as such (the overlap check would blame the overlap)
    for w, h in ((0, 32), (32, 0), (-8, 32)):
        with pytest.raises(ValueError, match=f"tile size must be at least 1 px, got {min(w, h)}"):
            tile_grid(100, 100, w, h, 0.2)


def test_a_box_across_a_border_is_split_and_small_parts_dropped():
    boxes = np.array([[400.0, 100.0, 600.0, 200.0], [500.0, 0.0, 600.0, 10.0]])
    left, right = Tile(0, 0, 512, 512), Tile(410, 0, 512, 512)
    parts, frac = clip_boxes(boxes, left, 1000, 1000)
    assert parts[0].tolist() == [400.0, 100.0, 512.0, 200.0] and frac[0] == pytest.approx(112 / 200)
    assert frac[1] == pytest.approx(12 / 100)  # kept at min_visible 0.1, dropped at 0.2
    parts, frac = clip_boxes(boxes, right, 1000, 1000)
    assert parts[0].tolist() == [0.0, 100.0, 190.0, 200.0] and frac[0] == pytest.approx(190 / 200)


def test_polygon_clipping_and_repair():
    # right triangle (0,0) (20,0) (0,20), area 200; the tile x >= 10 keeps the triangle (10,0) (20,0) (10,10)
    tri = [[0, 0, 20, 0, 0, 20]]
    polys, inside, total = clip_polygons(tri, Tile(10, 0, 30, 30), 100, 100)
    assert total == pytest.approx(200) and inside == pytest.approx(50)
    xy = np.asarray(polys[0]).reshape(-1, 2)
    assert {tuple(p) for p in xy.tolist()} == {(0.0, 0.0), (10.0, 0.0), (0.0, 10.0)}
    # a self-intersecting bow tie is repaired into its two triangles (area 2 x 25), not dropped
    bowtie = [[0, 0, 10, 10, 10, 0, 0, 10]]
    polys, inside, total = clip_polygons(bowtie, Tile(0, 0, 64, 64), 64, 64)
    assert total == pytest.approx(50) and inside == pytest.approx(50) and len(polys) == 2


def test_rle_crop_equals_decoding_and_slicing():
    rng = np.random.default_rng(0)
    mask = (rng.random((37, 53)) > 0.6).astype(np.uint8)
    rle = mask_utils.encode(np.asfortranarray(mask))
    rle["counts"] = rle["counts"].decode("ascii")
    tile = Tile(10, 5, 20, 40)  # reaches past the bottom: padded with zeros
    cut, inside, total = crop_rle(rle, tile)
    want = np.zeros((40, 20), np.uint8)
    want[:32] = mask[5:37, 10:30]
    assert (mask_utils.decode(cut) == want).all() and inside == want.sum() and total == mask.sum()
    assert crop_rle(rle, Tile(60, 0, 10, 10))[0] is None
