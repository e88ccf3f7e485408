"""A picture of a large scene, read decimated (needs the ``geo`` extra: rasterio)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from detimb.data.tiling.raster import RasterSource


def scene_picture(path: str | Path, max_side: int = 4096) -> tuple[np.ndarray, float]:
    """An (h, w, 3) uint8 RGB picture of a scene, read decimated by GDAL so that its longer
    side is at most ``max_side`` (never the whole scene at full size), and the factor that
    maps scene pixels onto it."""
    with RasterSource(path) as src:
        scale = min(1.0, max_side / max(src.width, src.height))
        h, w = max(1, round(src.height * scale)), max(1, round(src.width * scale))
        bands = (src.bands * 3)[:3] if len(src.bands) < 3 else src.bands[:3]
        pixels = src.read_decimated(bands, (h, w))
    if pixels.dtype != np.uint8:
        top = float(np.iinfo(pixels.dtype).max) if np.issubdtype(pixels.dtype, np.integer) else 1.0
        pixels = np.clip(pixels.astype(np.float64) / top * 255.0, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(pixels.transpose(1, 2, 0)), scale
