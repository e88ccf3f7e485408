"""Annotations cut to a tile: boxes in float, polygons with shapely, RLE masks by column runs."""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from shapely import make_valid
from shapely.geometry import MultiPolygon, Polygon, box
from shapely.geometry.base import BaseGeometry

from detimb.data.tiling.grid import Tile


def clip_boxes(boxes: np.ndarray, tile: Tile, image_w: int, image_h: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4) xyxy float boxes -> the part of each inside the tile (and the image), in the
    tile's own pixels, and its visible fraction of the original area (0 for none)."""
    x0 = np.maximum(boxes[:, 0], tile.x0)
    y0 = np.maximum(boxes[:, 1], tile.y0)
    x1 = np.minimum(boxes[:, 2], min(tile.x1, image_w))
    y1 = np.minimum(boxes[:, 3], min(tile.y1, image_h))
    visible = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    fraction = np.where(area > 0, visible / np.where(area > 0, area, 1), 0.0)
    shifted = np.stack([x0 - tile.x0, y0 - tile.y0, x1 - tile.x0, y1 - tile.y0], axis=1)
    return shifted, fraction


def polygons_to_shape(segmentation: list[list[float]]) -> BaseGeometry:
    """COCO polygons (flat x, y lists) as one valid shapely geometry (self-intersections repaired)."""
    parts = [Polygon(np.asarray(p, dtype=np.float64).reshape(-1, 2)) for p in segmentation if len(p) >= 6]
    shape = make_valid(MultiPolygon(parts) if len(parts) > 1 else parts[0]) if parts else Polygon()
    return shape


def _polygonal(shape: BaseGeometry) -> list[Polygon]:
    if isinstance(shape, Polygon):
        return [shape] if not shape.is_empty and shape.area > 0 else []
    return [p for g in getattr(shape, "geoms", []) for p in _polygonal(g)]


def clip_polygons(segmentation: list[list[float]], tile: Tile, image_w: int, image_h: int
                  ) -> tuple[list[list[float]], float, float]:
    """COCO polygons cut to the tile, in tile pixels: (polygons, clipped area, original area).
    Invalid input is repaired (``make_valid``) rather than dropped; holes are not kept
    (COCO polygons have none)."""
    shape = polygons_to_shape(segmentation)
    window = box(tile.x0, tile.y0, min(tile.x1, image_w), min(tile.y1, image_h))
    parts = _polygonal(shape.intersection(window))
    out = []
    for part in parts:
        coords = np.asarray(part.exterior.coords)[:-1] - (tile.x0, tile.y0)
        if len(coords) >= 3:
            out.append([round(float(v), 3) for v in coords.reshape(-1)])
    return out, float(sum(p.area for p in parts)), float(shape.area)


def rle_counts(rle: dict[str, Any]) -> np.ndarray:
    """Run lengths of a COCO RLE (compressed string or list), column-major, starting with 0s."""
    counts = rle["counts"]
    if isinstance(counts, list):
        return np.asarray(counts, dtype=np.int64)
    data = counts.encode("ascii") if isinstance(counts, str) else counts
    out: list[int] = []
    i = 0
    while i < len(data):  # pycocotools' LEB128-like code: 5 bits a char, sign in bit 4 of the last
        x, k, more = 0, 0, True
        while more:
            c = data[i] - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            i += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(out) > 2:
            x += out[-2]
        out.append(x)
    return np.asarray(out, dtype=np.int64)


def crop_rle(rle: dict[str, Any], tile: Tile) -> tuple[dict[str, Any] | None, int, int]:
    """A COCO RLE mask cut to the tile without decoding the whole image: only the tile's
    columns are expanded. Returns (compressed RLE of the tile or None when empty, pixels
    inside, pixels in all)."""
    h, w = rle["size"]
    runs = rle_counts(rle)
    ends = np.cumsum(runs)
    starts = ends - runs
    values = np.arange(len(runs)) % 2  # runs alternate 0, 1, 0, ...
    total = int(runs[values == 1].sum())
    x0, x1 = max(0, tile.x0), min(w, tile.x1)
    y0, y1 = max(0, tile.y0), min(h, tile.y1)
    if x1 <= x0 or y1 <= y0:
        return None, 0, total
    lo, hi = x0 * h, x1 * h  # the tile's columns, in column-major order
    s, e = starts[values == 1], ends[values == 1]
    hit = (e > lo) & (s < hi)
    edges = np.zeros(hi - lo + 1, dtype=np.int64)  # +1 where a run of ones opens, -1 where it closes
    np.add.at(edges, np.maximum(s[hit], lo) - lo, 1)
    np.add.at(edges, np.minimum(e[hit], hi) - lo, -1)
    column = np.cumsum(edges[:-1]).astype(np.uint8)
    block = column.reshape(x1 - x0, h).T[y0:y1]
    out = np.zeros((tile.height, tile.width), dtype=np.uint8)
    out[y0 - tile.y0:y1 - tile.y0, x0 - tile.x0:x1 - tile.x0] = block
    inside = int(block.sum())
    if inside == 0:
        return None, 0, total
    encoded = mask_utils.encode(np.asfortranarray(out))
    encoded["counts"] = encoded["counts"].decode("ascii")
    return encoded, inside, total
