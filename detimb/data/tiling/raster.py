"""Rasters read tile by tile or in row bands (never whole) and tiles written as GeoTIFF, PNG or JPEG.

Everything is read through rasterio/GDAL: GeoTIFFs and also PNG/JPEG scenes, whose
decoders only move forward; the band reader therefore reads each row of pixels once,
top to bottom, keeping only the rows the current row of tiles needs.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
import rasterio
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from detimb.data.tiling.grid import Tile
from detimb.errors import DatasetError


def open_raster(path: str | Path) -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except rasterio.errors.RasterioIOError as err:
        raise DatasetError(f"{path}: cannot be read as a raster ({err}). Fix: restore the file or drop its record")\
            from err


class RasterSource:
    """A raster's size, bands, georeferencing, and its tiles' pixels.

    ``bands``: 1-based band indices to keep (default all; with ``drop_alpha`` all but the
    alpha bands). Georeferenced when the file has a CRS and a non-identity transform."""

    def __init__(self, path: str | Path, bands: list[int] | None = None, cache_mb: int = 64, *,
                 drop_alpha: bool = False) -> None:
        self.path = Path(path)
        # Each row is read once and kept in our own band buffer, so GDAL's block cache (by
        # default 5% of RAM) only grows memory with the scene; keep it small.
        self._env = rasterio.Env(GDAL_CACHEMAX=cache_mb)
        self._env.__enter__()
        try:
            self.ds = open_raster(path)
        except DatasetError:
            self._env.__exit__(None, None, None)
            raise
        self.width, self.height = self.ds.width, self.ds.height
        alpha = {b for b in range(1, self.ds.count + 1) if self.ds.colorinterp[b - 1] == ColorInterp.alpha}
        self.bands = list(bands) if bands else [b for b in range(1, self.ds.count + 1)
                                                  if not (drop_alpha and b in alpha)]
        if any(not 1 <= b <= self.ds.count for b in self.bands):
            raise DatasetError(f"{path}: has bands 1..{self.ds.count}, --bands asked for {self.bands}")
        self.dtype = np.dtype(self.ds.dtypes[self.bands[0] - 1])
        self.nodata = self.ds.nodata
        self.crs = self.ds.crs
        self.transform = self.ds.transform
        self.georeferenced = self.crs is not None and not self.transform.is_identity

    def close(self) -> None:
        self.ds.close()
        self._env.__exit__(None, None, None)

    def __enter__(self) -> "RasterSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def read_decimated(self, bands: list[int], shape: tuple[int, int], *, average: bool = False) -> np.ndarray:
        """(len(bands), h, w) pixels of the whole scene read at ``shape`` (h, w) by GDAL's
        overview reading (nearest pixel, or the block ``average``): never the scene at full size."""
        return self.ds.read(bands, out_shape=(len(bands), *shape),
                            resampling=Resampling.average if average else Resampling.nearest)

    def tile_transform(self, tile: Tile) -> Any:
        return window_transform(Window(tile.x0, tile.y0, tile.width, tile.height), self.transform)

    @property
    def block_tiled(self) -> bool:
        """Whether the file is stored in blocks narrower than the scene (a tiled GeoTIFF, a
        COG): GDAL then reads any window from its own blocks without decoding the rows
        before it."""
        block_rows, block_cols = self.ds.block_shapes[0]
        return block_cols < self.width and block_rows < self.height

    def tiles(self, grid: list[Tile]) -> Iterator[tuple[int, Tile, np.ndarray]]:
        """(index in grid, tile, pixels (bands, height, width)) in grid order (row by row).
        Pixels outside the image (edge 'pad') are the nodata value, or 0.

        A block-tiled file is read tile by tile (GDAL's block cache, capped, holds the blocks
        neighbouring tiles share): memory is flat in the scene's width and height. Any other
        (PNG, JPEG, a striped TIFF: decoded front to back) is read in row bands, each row
        once, kept in a buffer one tile row high and the scene's width wide."""
        if self.block_tiled:
            yield from self._window_tiles(grid)
            return
        buf = np.zeros((len(self.bands), 0, self.width), dtype=self.dtype)
        buf_y0 = 0
        for index, tile in enumerate(grid):
            y0, y1 = tile.y0, min(tile.y1, self.height)
            if y0 < buf_y0:
                raise ValueError("tiles must come in row order")
            buf_end = buf_y0 + buf.shape[1]
            if y1 > buf_end:  # read only rows not read before: the decoder moves forward
                start = max(buf_end, y0)
                new = self.ds.read(self.bands, window=Window(0, start, self.width, y1 - start))
                buf = new if y0 >= buf_end else np.concatenate([buf[:, y0 - buf_y0:], new], axis=1)
                buf_y0 = y0
            elif y0 > buf_y0:  # rows above this tile row are done with
                buf, buf_y0 = buf[:, y0 - buf_y0:], y0
            x0, x1 = tile.x0, min(tile.x1, self.width)
            pixels = buf[:, y0 - buf_y0:y1 - buf_y0, x0:x1]
            yield index, tile, self._padded(pixels, tile)

    def _window_tiles(self, grid: list[Tile]) -> Iterator[tuple[int, Tile, np.ndarray]]:
        for index, tile in enumerate(grid):
            x1, y1 = min(tile.x1, self.width), min(tile.y1, self.height)
            pixels = self.ds.read(self.bands, window=Window(tile.x0, tile.y0, x1 - tile.x0, y1 - tile.y0))
            yield index, tile, self._padded(pixels, tile)

    def _padded(self, pixels: np.ndarray, tile: Tile) -> np.ndarray:
        """A tile's pixels filled out past the scene's edge (edge 'pad') with nodata, or 0."""
        if pixels.shape[1:] == (tile.height, tile.width):
            return pixels
        fill = self.nodata if self.nodata is not None else 0
        padded = np.full((len(self.bands), tile.height, tile.width), fill, dtype=self.dtype)
        padded[:, :pixels.shape[1], :pixels.shape[2]] = pixels
        return padded


def nodata_fraction(pixels: np.ndarray, nodata: float | None) -> float:
    """Share of pixels whose every band equals ``nodata`` (0 when the raster has none)."""
    if nodata is None:
        return 0.0
    return float((pixels == nodata).all(axis=0).mean())


def convert(pixels: np.ndarray, dtype: str | None, scale: tuple[float, float] | None) -> np.ndarray:
    """Change the data type explicitly: values in ``scale`` (min, max) map linearly onto the
    target type's range (clipped); without ``scale`` values are cast (clipped to the range)."""
    if dtype is None:
        return pixels
    target = np.dtype(dtype)
    info = np.iinfo(target) if np.issubdtype(target, np.integer) else None
    x = pixels.astype(np.float64)
    if scale is not None:
        lo, hi = scale
        x = (x - lo) / max(hi - lo, 1e-12)
        x = x * (info.max - info.min) + info.min if info else x
    if info is not None:
        x = np.clip(np.rint(x), info.min, info.max)
    return x.astype(target)


def write_tile(path: Path, pixels: np.ndarray, fmt: str, crs: Any = None, transform: Any = None,
               png_compression: int = 1, jpeg_quality: int = 95, tif_compress: str | None = None) -> None:
    """Write (bands, h, w) pixels atomically: GeoTIFF keeps the tile's transform and CRS;
    PNG/JPEG take 1 or 3 (RGB) bands of uint8 (PNG also uint16)."""
    tmp = path.with_name(f".{path.name}.tmp")
    if fmt == "tif":
        profile = {"driver": "GTiff", "width": pixels.shape[2], "height": pixels.shape[1], "count": pixels.shape[0],
                   "dtype": pixels.dtype.name, "crs": crs, "transform": transform}
        if tif_compress:
            profile["compress"] = tif_compress
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(tmp, "w", **profile) as dst:
                dst.write(pixels)
    else:
        if pixels.shape[0] not in (1, 3) or pixels.dtype not in (np.uint8, np.uint16) or \
                (fmt == "jpg" and pixels.dtype != np.uint8):
            raise DatasetError(f"{path.name}: {fmt.upper()} takes 1 or 3 bands of uint8 (PNG: or uint16), the tile"
                               f" has {pixels.shape[0]} of {pixels.dtype}. Fix: --format tif, or --bands and"
                               " --dtype uint8 --scale MIN MAX")
        image = pixels[0] if pixels.shape[0] == 1 else cv2.cvtColor(np.moveaxis(pixels, 0, -1), cv2.COLOR_RGB2BGR)
        params = [cv2.IMWRITE_PNG_COMPRESSION, png_compression] if fmt == "png" else \
            [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality]
        ok, data = cv2.imencode(f".{fmt}", image, params)
        if not ok:
            raise DatasetError(f"{path}: OpenCV could not encode the tile as {fmt}")
        tmp.write_bytes(data.tobytes())
    os.replace(tmp, path)


def apply_affine(t: Any, x: Any, y: Any) -> tuple[Any, Any]:
    """Map pixel (x, y) (scalars or arrays) through an affine transform (a b c / d e f)."""
    return t.a * x + t.b * y + t.c, t.d * x + t.e * y + t.f
