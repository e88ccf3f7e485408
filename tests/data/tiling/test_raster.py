"""Reading a scene's tiles: block-tiled files window by window, others in row bands; the
pixels are the scene's own (numpy slices of what was written), padded past its edge."""

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from detimb.data.tiling.grid import tile_grid
from detimb.data.tiling.raster import RasterSource

HEIGHT, WIDTH = 150, 170


def write(path, pixels, **layout):
    profile = {"width": WIDTH, "height": HEIGHT, "count": 3, "dtype": "uint16", "crs": "EPSG:32617",
               "transform": from_origin(500000.0, 4100000.0, 0.5, 0.5), "nodata": 7, **layout}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(pixels)


@pytest.fixture(scope="module")
def pixels():
    return np.random.default_rng(0).integers(0, 4000, (3, HEIGHT, WIDTH), dtype=np.uint16)


@pytest.mark.parametrize("layout, tiled", [
    ({"driver": "GTiff", "tiled": True, "blockxsize": 32, "blockysize": 32}, True),  # read window by window
    ({"driver": "GTiff"}, False),  # strips the scene's width: row bands
    ({"driver": "PNG"}, False),  # decoded front to back: row bands
])
@pytest.mark.parametrize("edge", ["shift", "pad"])
def test_tiles_are_the_scenes_pixels_in_every_layout(tmp_path, pixels, layout, tiled, edge):
    path = tmp_path / ("scene.png" if layout["driver"] == "PNG" else "scene.tif")
    write(path, pixels, **layout)
    grid = tile_grid(HEIGHT, WIDTH, 48, 48, overlap=10, edge=edge)
    with RasterSource(path) as src:
        assert src.block_tiled is tiled and src.nodata == 7  # PNG keeps it as its transparent colour
        seen = list(src.tiles(grid))
    assert [i for i, _, _ in seen] == list(range(len(grid)))
    padded = np.full((3, HEIGHT + 48, WIDTH + 48), 7, dtype=np.uint16)  # past the edge: nodata
    padded[:, :HEIGHT, :WIDTH] = pixels
    for _, tile, got in seen:
        assert got.shape == (3, 48, 48) and got.dtype == np.uint16
        assert np.array_equal(got, padded[:, tile.y0:tile.y1, tile.x0:tile.x1]), tile
