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
    return np.ascontiguousarray(display_uint8(pixels).transpose(1, 2, 0)), scale


def display_uint8(pixels: np.ndarray) -> np.ndarray:
    """(bands, h, w) pixels of any type as uint8 for a picture. Values within 0-255 are
    shown as they are, as an RGB model reads them (``detimb.data.pixels``: a uint16 or
    float copy of 8-bit pixels); others (12- or 16-bit sensors, reflectance) are stretched
    per band from its 2nd to its 98th percentile, the usual display stretch (dividing by
    the type's maximum showed a 12-bit scene nearly black). Non-finite values are black."""
    if pixels.dtype == np.uint8:
        return pixels
    values = pixels.astype(np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros(pixels.shape, dtype=np.uint8)
    values = np.where(finite, values, 0.0)
    if values[finite].min() >= 0 and values[finite].max() <= 255:
        return np.rint(values).astype(np.uint8)
    out = np.zeros(pixels.shape, dtype=np.uint8)
    for band, (plane, ok) in enumerate(zip(values, finite)):
        if not ok.any():
            continue
        lo, hi = np.percentile(plane[ok], [2, 98])
        stretched = (plane - lo) / (hi - lo) * 255.0 if hi > lo else np.where(plane > lo, 255.0, 0.0)
        out[band] = np.where(ok, np.clip(stretched, 0, 255), 0).round().astype(np.uint8)
    return out
