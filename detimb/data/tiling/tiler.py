"""Cut scenes and their annotations into tiles: a new COCO dataset with a tile index.

Each scene is read tile by tile or in row bands (``raster.RasterSource``), its
annotations are indexed once in an R-tree (shapely's STRtree) and queried for all tiles in
one call, so no tile x annotation loop runs. Scenes go to ``workers`` processes. Each
finished scene leaves a part file in ``<out>/.parts``; a rerun after an interruption skips those and
then assembles ``<out>/annotations.json`` (ids assigned in scene and tile order, so the
result does not depend on which worker finished first). Tiles and JSON are written
atomically; nothing is written outside ``out``.
"""

from __future__ import annotations

import json
import math
import shutil
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from pycocotools import mask as mask_utils
from tqdm import tqdm

from detimb.data.tiling.clip import clip_boxes, clip_polygons, crop_rle
from detimb.data.tiling.grid import Tile, tile_grid
from detimb.data.tiling.raster import RasterSource, convert, nodata_fraction, write_tile
from detimb.errors import DatasetError, DetimbError, OptionError
from detimb.utils import atomic_write_json, is_whole_number

FORMATS = ("auto", "tif", "png", "jpg")


@dataclass(kw_only=True)
class TileOptions:
    """How to tile. ``size`` (h, w); ``overlap`` ratio (< 1) or pixels, one value or (y, x);
    ``edge`` shift | pad | skip; an annotation is kept in a tile when its visible part is at
    least ``min_visible`` of it (SAHI's default 0.1); tiles without annotations are kept
    with probability ``empty_keep`` (seeded), or, with ``empty_ratio`` R, so that empty
    tiles make up R of the kept tiles (``resolve_empty_ratio``); tiles more than ``max_nodata`` nodata are
    dropped; ``fmt`` auto = GeoTIFF for georeferenced scenes, else PNG; ``bands`` (1-based),
    ``dtype`` and ``scale`` (min, max) convert pixels explicitly (default: kept as they are);
    ``write_threads`` encode and write one scene's tiles in parallel (PNG/JPEG/GeoTIFF
    encoders release the GIL), at most twice as many tiles in flight as threads."""

    size: tuple[int, int] = (512, 512)
    overlap: float | tuple[float, float] = 0.2
    edge: str = "shift"
    min_visible: float = 0.1
    empty_keep: float = 1.0
    empty_ratio: float | None = None
    max_nodata: float = 0.99
    fmt: str = "auto"
    bands: list[int] | None = None
    dtype: str | None = None
    scale: tuple[float, float] | None = None
    png_compression: int = 1
    jpeg_quality: int = 95
    tif_compress: str | None = None
    seed: int = 0
    write_threads: int = 2

    def __post_init__(self) -> None:
        if self.fmt not in FORMATS:
            raise OptionError(f"format must be one of {FORMATS}, got {self.fmt!r}")
        if not 0.0 <= self.min_visible <= 1.0 or not 0.0 <= self.empty_keep <= 1.0:
            raise OptionError("min_visible and empty_keep must be in [0, 1]")
        if not is_whole_number(self.seed, at_least=0):
            raise OptionError(f"seed must be an integer >= 0, got {self.seed!r}")
        if self.write_threads < 1:
            raise OptionError(f"write_threads must be >= 1, got {self.write_threads}")
        if self.empty_ratio is not None and not 0.0 <= self.empty_ratio < 1.0:
            raise OptionError(f"empty_ratio must be in [0, 1), got {self.empty_ratio}")
        self._check_encoding()

    def _check_encoding(self) -> None:
        """The pixel conversion and encoders' ranges: outside them OpenCV clamps without a word,
        and a scale whose minimum is not below its maximum would invert or flatten the pixels."""
        if not 0.0 <= self.max_nodata <= 1.0:
            raise OptionError(f"max_nodata must be in [0, 1] (a share of the tile), got {self.max_nodata}")
        if not 0 <= self.png_compression <= 9:
            raise OptionError(f"png_compression must be 0..9 (PNG's levels), got {self.png_compression}")
        if not 0 <= self.jpeg_quality <= 100:
            raise OptionError(f"jpeg_quality must be 0..100, got {self.jpeg_quality}")
        if self.scale is not None and not (len(self.scale) == 2 and all(math.isfinite(v) for v in self.scale)
                                           and self.scale[0] < self.scale[1]):
            raise OptionError(f"scale must be (min, max) with min < max, got {self.scale}")


@dataclass
class Scene:
    """One image to tile: its file, its record (id, file_name, width, height; width/height
    None for a raster read as is) and its annotations in pixels (COCO records)."""

    index: int
    path: str
    record: dict[str, Any]
    annotations: list[dict[str, Any]] = field(default_factory=list)


def _xyxy(anns: list[dict[str, Any]]) -> np.ndarray:
    b = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
    return np.stack([b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]], axis=1)


def tile_candidates(boxes: np.ndarray, grid: list[Tile]) -> list[np.ndarray]:
    """For each tile, the indices of the boxes that touch it: one bulk R-tree query."""
    out = [np.zeros(0, dtype=np.int64) for _ in grid]
    if len(boxes) == 0 or not grid:
        return out
    tree = shapely.STRtree(shapely.box(boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]))
    t = np.array([[g.x0, g.y0, g.x1, g.y1] for g in grid], dtype=np.float64)
    tile_idx, box_idx = tree.query(shapely.box(t[:, 0], t[:, 1], t[:, 2], t[:, 3]), predicate="intersects")
    order = np.lexsort((box_idx, tile_idx))
    tile_idx, box_idx = tile_idx[order], box_idx[order]
    bounds = np.searchsorted(tile_idx, np.arange(len(grid) + 1))
    return [box_idx[bounds[i]:bounds[i + 1]] for i in range(len(grid))]


def _round(values: Any) -> list[float]:
    return [round(float(v), 3) for v in values]


def clip_annotations(anns: list[dict[str, Any]], boxes: np.ndarray, candidates: np.ndarray, tile: Tile,
                     width: int, height: int, min_visible: float) -> list[dict[str, Any]]:
    """The candidates' parts inside ``tile``, in tile pixels, kept when visible >= min_visible.
    Boxes are cut in float; polygons with shapely (area ratio of the polygons); RLE masks by
    their columns (pixel ratio). Each record names its ``parent_annotation_id``."""
    if len(candidates) == 0:
        return []
    clipped, fraction = clip_boxes(boxes[candidates], tile, width, height)
    out = []
    for k, i in enumerate(candidates.tolist()):
        ann = anns[i]
        seg = ann.get("segmentation")
        record: dict[str, Any] = {"category_id": ann["category_id"], "iscrowd": ann.get("iscrowd", 0),
                                  "parent_annotation_id": ann.get("id")}
        if isinstance(seg, list) and seg:
            polygons, inside, total = clip_polygons(seg, tile, width, height)
            if not polygons or total <= 0 or inside / total < min_visible:
                continue
            xy = np.concatenate([np.asarray(p).reshape(-1, 2) for p in polygons])
            x0, y0 = xy.min(0)
            x1, y1 = xy.max(0)
            record.update(segmentation=polygons, area=round(inside, 3))
        elif isinstance(seg, dict):
            rle, inside_px, total_px = crop_rle(seg, tile)
            if rle is None or inside_px / max(total_px, 1) < min_visible:
                continue
            x0, y0, w, h = mask_utils.toBbox(rle)
            x1, y1 = x0 + w, y0 + h
            record.update(segmentation=rle, area=float(inside_px))
        else:
            if fraction[k] < min_visible or fraction[k] <= 0:
                continue
            x0, y0, x1, y1 = clipped[k]
            record["area"] = round(float((x1 - x0) * (y1 - y0)), 3)
        if x1 - x0 <= 0 or y1 - y0 <= 0:
            continue
        record["bbox"] = _round([x0, y0, x1 - x0, y1 - y0])
        out.append(record)
    return out


def empty_draw(options: TileOptions, scene: Scene, index: int) -> float:
    """The seeded draw that decides whether an empty tile is kept (below the keep share)."""
    return float(np.random.default_rng([options.seed, scene.index, index]).random())


def resolve_empty_ratio(scenes: list[Scene], options: TileOptions) -> TileOptions:
    """``options`` with ``empty_keep`` set so that, of the kept tiles, a share ``empty_ratio``
    is empty: one pass over the scenes' grids and annotations (no pixels read) counts the
    tiles with annotations (A) and draws each empty tile's number; the ``round(R A / (1 - R))``
    empty tiles with the lowest draws are kept (all of them when there are fewer). The count
    is taken before the nodata filter, which can drop some of the kept tiles."""
    if options.empty_ratio is None:
        return options
    if options.empty_keep != 1.0:
        raise OptionError("give --empty-keep or --empty-ratio, not both")
    draws: list[float] = []
    with_annotations = 0
    for scene in scenes:
        width, height = scene.record.get("width"), scene.record.get("height")
        if width is None or height is None:
            with RasterSource(scene.path, options.bands) as src:
                width, height = src.width, src.height
        grid = tile_grid(height, width, *options.size, overlap=options.overlap, edge=options.edge)
        boxes = _xyxy(scene.annotations)
        candidates = tile_candidates(boxes, grid)
        for index, tile in enumerate(grid):
            if clip_annotations(scene.annotations, boxes, candidates[index], tile, width, height, options.min_visible):
                with_annotations += 1
            else:
                draws.append(empty_draw(options, scene, index))
    ratio = options.empty_ratio
    quota = min(len(draws), round(ratio * with_annotations / (1 - ratio)))
    cutoff = 1.0 if quota == len(draws) else sorted(draws)[quota]
    return replace(options, empty_keep=cutoff)


class BoundedWriter:
    """A thread pool for tile writes that holds at most ``2 * threads`` tiles in flight, so
    the memory bound of reading a scene band by band holds (the tiles are views of band
    buffers the reader never writes to again); errors surface on the next submit or on
    ``close``."""

    def __init__(self, threads: int) -> None:
        self.pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None
        self.limit = 2 * threads
        self.pending: deque[Future[None]] = deque()

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        if self.pool is None:
            fn(*args)
            return
        while len(self.pending) >= self.limit:
            self.pending.popleft().result()
        self.pending.append(self.pool.submit(fn, *args))

    def close(self) -> None:
        try:
            while self.pending:
                self.pending.popleft().result()
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True, cancel_futures=True)


def tile_name(file_name: str, tile: Tile, fmt: str) -> str:
    stem = Path(file_name).with_suffix("")
    return f"{stem.as_posix()}_x{tile.x0}_y{tile.y0}.{fmt}"


def tile_scene(scene: Scene, options: TileOptions, out: Path, progress: bool = False) -> dict[str, Any]:
    """Tile one scene; returns (and writes to ``out/.parts``) its tiles and annotations.
    ``progress``: a bar over the tiles of a large scene (200 tiles or more)."""
    with RasterSource(scene.path, options.bands) as src:
        record = dict(scene.record)
        if record.get("width") not in (None, src.width) or record.get("height") not in (None, src.height):
            raise DatasetError(f"{scene.path}: is {src.width}x{src.height} but its record says"
                               f" {record.get('width')}x{record.get('height')}. Fix: correct the record")
        record.update(width=src.width, height=src.height)
        fmt = options.fmt if options.fmt != "auto" else ("tif" if src.georeferenced else "png")
        grid = tile_grid(src.height, src.width, *options.size, overlap=options.overlap, edge=options.edge)
        boxes = _xyxy(scene.annotations)
        candidates = tile_candidates(boxes, grid)
        images, annotations = [], []
        stats = {"tiles_in_grid": len(grid), "dropped_empty": 0, "dropped_nodata": 0}
        tiles = tqdm(src.tiles(grid), total=len(grid), desc=Path(scene.path).name, unit="tile", leave=False,
                     disable=not progress or len(grid) < 200)
        writer = BoundedWriter(options.write_threads)
        try:
            for index, tile, pixels in tiles:
                anns = clip_annotations(scene.annotations, boxes, candidates[index], tile, src.width, src.height,
                                        options.min_visible)
                if not anns and empty_draw(options, scene, index) >= options.empty_keep:
                    stats["dropped_empty"] += 1
                    continue
                if options.max_nodata < 1.0 and nodata_fraction(pixels, src.nodata) > options.max_nodata:
                    stats["dropped_nodata"] += 1
                    continue
                name = tile_name(record["file_name"], tile, fmt)
                path = out / "images" / name
                path.parent.mkdir(parents=True, exist_ok=True)
                geo = src.tile_transform(tile) if src.georeferenced else None
                writer.submit(write_tile, path, convert(pixels, options.dtype, options.scale), fmt,
                              src.crs if geo else None, geo, options.png_compression, options.jpeg_quality,
                              options.tif_compress)
                images.append({"file_name": name, "width": tile.width, "height": tile.height, "tile": {
                    "parent_id": record["id"], "parent_file": record["file_name"], "x0": tile.x0, "y0": tile.y0,
                    "transform": list(geo)[:6] if geo else None, "crs": src.crs.to_string() if geo else None}})
                annotations.append(anns)
        finally:
            writer.close()  # every tile on disk before the scene's part is recorded
        parent = {**record, "transform": list(src.transform)[:6] if src.georeferenced else None,
                  "crs": src.crs.to_string() if src.georeferenced else None}
    part = {"parent": parent, "images": images, "annotations": annotations, "stats": stats}
    atomic_write_json(out / ".parts" / f"{scene.index:08d}.json", part)
    return part


def _job(scene: Scene, options: TileOptions, out: Path, progress: bool = False) -> tuple[int, dict[str, int]]:
    return scene.index, tile_scene(scene, options, out, progress)["stats"]


def check_output(out: Path, inputs: list[Path]) -> None:
    """Refuse an output folder that is an input, contains one, or lies inside an input folder."""
    out = out.resolve()
    for p in inputs:
        p = p.resolve()
        if out == p or p.is_relative_to(out) or (p.is_dir() and out.is_relative_to(p)):
            raise DatasetError(f"--out {out} overlaps the input {p}; tiles are written to a new folder. Fix: choose"
                               " a folder outside the inputs")


def run_tiling(scenes: list[Scene], categories: list[dict[str, Any]], options: TileOptions, out: str | Path,
               workers: int = 1, progress: bool = True, source: dict[str, Any] | None = None) -> dict[str, Any]:
    """Tile every scene into ``out`` (``images/`` and ``annotations.json``); resumable.
    Returns a summary (scenes, tiles, annotations, drops)."""
    out = Path(out)
    final = out / "annotations.json"
    parts = out / ".parts"
    options = resolve_empty_ratio(scenes, options)
    settings = {"options": json.loads(json.dumps(asdict(options))), "source": source or {},
                "scenes": [s.path for s in scenes]}
    if final.is_file() and not parts.exists():
        done = json.loads(final.read_text())
        if done.get("tiling") != settings:
            raise DatasetError(f"{final} exists from a run with other settings. Fix: choose a new --out")
        return done["summary"]
    created = not out.exists()
    try:
        return _run(scenes, categories, options, out, workers, progress, settings)
    except (DetimbError, ValueError):
        if created:  # a refusal leaves no partial output behind (an interruption keeps its parts to resume)
            shutil.rmtree(out, ignore_errors=True)
        raise


def _run(scenes: list[Scene], categories: list[dict[str, Any]], options: TileOptions, out: Path, workers: int,
         progress: bool, settings: dict[str, Any]) -> dict[str, Any]:
    final, parts = out / "annotations.json", out / ".parts"
    parts.mkdir(parents=True, exist_ok=True)
    job_file = parts / "job.json"
    if job_file.is_file() and json.loads(job_file.read_text()) != settings:
        raise DatasetError(f"{out} holds an unfinished tiling with other settings ({job_file}). Fix: rerun with the"
                           " same settings to finish it, or choose a new --out")
    atomic_write_json(job_file, settings)
    todo = [s for s in scenes if not (parts / f"{s.index:08d}.json").is_file()]
    bar = tqdm(total=len(scenes), initial=len(scenes) - len(todo), desc="tiling", unit="scene", disable=not progress)
    if workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for future in as_completed([pool.submit(_job, s, options, out) for s in todo]):
                future.result()
                bar.update(1)
    else:
        for s in todo:
            _job(s, options, out, progress)
            bar.update(1)
    bar.close()
    return _assemble(scenes, categories, parts, final, settings)


def _assemble(scenes: list[Scene], categories: list[dict[str, Any]], parts: Path, final: Path,
              settings: dict[str, Any]) -> dict[str, Any]:
    images, annotations, parents = [], [], []
    summary = {"scenes": len(scenes), "tiles": 0, "annotations": 0, "tiles_in_grid": 0, "dropped_empty": 0,
               "dropped_nodata": 0}
    for s in scenes:
        part = json.loads((parts / f"{s.index:08d}.json").read_text())
        parents.append(part["parent"])
        for key in ("tiles_in_grid", "dropped_empty", "dropped_nodata"):
            summary[key] += part["stats"][key]
        for image, anns in zip(part["images"], part["annotations"]):
            image_id = len(images) + 1
            images.append({"id": image_id, **image})
            for a in anns:
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, **a})
    summary.update(tiles=len(images), annotations=len(annotations))
    atomic_write_json(final, {"images": images, "annotations": annotations, "categories": categories,
                              "parents": parents, "tiling": settings, "summary": summary})
    shutil.rmtree(parts)
    return summary
