"""Tiling large images and rasters with their annotations (no torch needed; the ``geo``
extra: rasterio and shapely)."""

from detimb.optional import require_extra

require_extra("geo", "tiling", ("rasterio", "shapely"))

from detimb.data.tiling.grid import EDGE_POLICIES, Tile, tile_grid
from detimb.data.tiling.tiler import Scene, TileOptions, run_tiling, tile_scene

__all__ = ["EDGE_POLICIES", "Scene", "Tile", "TileOptions", "run_tiling", "tile_grid", "tile_scene"]
