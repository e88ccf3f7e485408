"""Where the tiles of an image lie (SAHI's slicing grid, with explicit edge policies)."""

from __future__ import annotations

from dataclasses import dataclass

from detimb.errors import OptionError

EDGE_POLICIES = ("shift", "pad", "skip")


@dataclass(frozen=True)
class Tile:
    """A window of the parent image: origin (x0, y0) and size (width, height) in pixels.
    With ``edge='pad'`` a window may reach past the image; the part outside is padding."""

    x0: int
    y0: int
    width: int
    height: int

    @property
    def x1(self) -> int:
        return self.x0 + self.width

    @property
    def y1(self) -> int:
        return self.y0 + self.height


def overlap_pixels(overlap: float, size: int) -> int:
    """``overlap`` < 1 is a ratio of the tile size (SAHI's ``int(ratio * size)``), >= 1 pixels."""
    if size < 1:
        raise OptionError(f"tile size must be at least 1 px, got {size}")
    px = int(overlap * size) if overlap < 1 else int(overlap)
    if overlap < 0 or px >= size:
        raise OptionError(f"overlap {overlap} must be >= 0 and smaller than the tile ({size} px)")
    return px


def starts(size: int, tile: int, overlap: int, edge: str) -> list[int]:
    """Tile origins along one axis of ``size`` pixels: 0, step, 2 step, ... (step = tile -
    overlap) until a tile reaches the end; the last one is moved inward to end at the edge
    ('shift', as SAHI), kept reaching past it ('pad'), or dropped ('skip'). An axis shorter
    than a tile gets one tile: clipped to the image (shift), padded (pad), or none (skip)."""
    if edge not in EDGE_POLICIES:
        raise OptionError(f"edge must be one of {EDGE_POLICIES}, got {edge!r}")
    if size <= 0 or tile <= 0:
        raise OptionError(f"need positive sizes, got image {size} and tile {tile}")
    step = tile - overlap
    out = [0]
    while out[-1] + tile < size:
        out.append(out[-1] + step)
    if out[-1] + tile > size:
        if edge == "skip":
            out.pop()
        elif edge == "shift":
            out[-1] = max(0, size - tile)
            if len(out) > 1 and out[-1] <= out[-2]:
                out.pop()
    return out


def tile_grid(height: int, width: int, tile_h: int, tile_w: int, overlap: float | tuple[float, float] = 0.2,
              edge: str = "shift") -> list[Tile]:
    """Tiles row by row (top to bottom, left to right). ``overlap``: one value for both axes
    or (y, x); ratios (< 1) or pixels (>= 1)."""
    oy, ox = overlap if isinstance(overlap, tuple) else (overlap, overlap)
    ys = starts(height, tile_h, overlap_pixels(oy, tile_h), edge)
    xs = starts(width, tile_w, overlap_pixels(ox, tile_w), edge)
    clip = edge == "shift"
    return [Tile(x, y, min(tile_w, width - x) if clip else tile_w, min(tile_h, height - y) if clip else tile_h)
            for y in ys for x in xs]
