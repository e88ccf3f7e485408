"""Sliced inference: a detector over the tiles of a large scene, predictions merged back.

The scene is read tile by tile or in row bands (``detimb.data.tiling.raster``), tiles go
through the model in batches, their boxes are shifted by the tile origin, an optional
full-image pass is added, and overlapping boxes are merged (``detimb.engine.merge``).
Instance masks (Mask R-CNN) are kept as crops and merged with their boxes
(``detimb.engine.scene_masks``).
Results come back in the scene's pixels (COCO boxes and RLE masks) and, for georeferenced
rasters, as GeoJSON or GeoPackage in its CRS: boxes as rectangles, masks as polygons.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from rasterio.enums import ColorInterp, Resampling
from torch import Tensor, nn

from detimb.data.label_map import LabelMap
from detimb.data.pixels import RGB, PixelSpec
from detimb.data.tiling.grid import tile_grid
from detimb.data.tiling.raster import RasterSource, apply_affine
from detimb.errors import DatasetError
from detimb.engine.merge import merge_groups
from detimb.engine.scene_masks import CropMask, masks_from_output, polygons, scene_rle, union
from detimb.optional import require_extra
from detimb.utils import atomic_write_json


@dataclass
class SliceSettings:
    """Tile size (h, w), overlap (ratio or pixels), batch size, full-image pass (on the scene
    read decimated so that its longer side is at most ``full_image_side``), the merge:
    method nms | greedy_nmm, match iou | ios above ``threshold``, class-agnostic or not, and
    how many batches of tiles a background thread reads ahead (``prefetch``), the bands
    and scaling the model was trained on (``pixels``, from the config), and the probability
    above which a predicted mask's pixel is in the mask (``mask_threshold``)."""

    size: tuple[int, int] = (512, 512)
    overlap: float = 0.2
    batch_size: int = 4
    full_image: bool = False
    method: str = "greedy_nmm"
    match: str = "ios"
    threshold: float = 0.5
    class_agnostic: bool = False
    score_threshold: float = 0.0
    full_image_side: int = 2048
    prefetch: int = 2
    pixels: PixelSpec = RGB
    mask_threshold: float = 0.5


def to_tensor(pixels: np.ndarray, spec: PixelSpec = RGB, source: str = "scene") -> Tensor:
    """(bands, h, w) raster pixels -> the model's input, by ``PixelSpec.convert`` (its bands
    and scaling; integers by their type's maximum by default; a band count other than the
    model's is a named error). An RGB model reads one band as grey (repeated three times);
    ``sliced_predict`` refuses more than three colour bands."""
    if spec.is_rgb and pixels.shape[0] == 1:
        pixels = np.repeat(pixels, 3, axis=0)
    return torch.from_numpy(np.ascontiguousarray(spec.convert(pixels, source)))


_DONE = object()


def prefetched(items: Iterator[Any], depth: int) -> Iterator[Any]:
    """``items`` produced by a background thread at most ``depth`` ahead (GDAL and the
    decoders release the GIL, so reading overlaps the model); an error in the reader is
    raised here. ``depth`` 0 reads in the calling thread."""
    if depth <= 0:
        yield from items
        return
    slots: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def read() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        slots.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put(_DONE)
        except BaseException as err:  # noqa: BLE001 - handed to the consumer
            slots.put(err)

    reader = threading.Thread(target=read, daemon=True, name="detimb-tile-reader")
    reader.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        reader.join()


@torch.no_grad()
def sliced_predict(model: nn.Module, path: str | Path, settings: SliceSettings, device: torch.device
                   ) -> dict[str, Any]:
    """Merged predictions for one scene: ``boxes`` (N, 4) xyxy scene pixels, ``scores``,
    ``labels``, ``masks`` (a model that predicts masks: N ``CropMask`` in scene pixels, the
    union of each merged box's members, None where a mask is empty; else None), the scene's
    ``width``, ``height``, ``transform``, ``crs``, ``tiles``, and ``wait_s`` / ``wall_s``: the
    time spent waiting for pixels and in all. Tiles are read window by window or in row
    bands (``RasterSource.tiles``: memory flat in scene size) by a background thread; the
    full-image pass reads a decimated overview, never the whole scene."""
    model.eval()
    boxes, scores, labels = [], [], []
    masks: list[CropMask | None] = []
    with_masks = False
    start = time.perf_counter()
    waited = 0.0

    def run(batch: list[tuple[Tensor, int, int]], scene: tuple[int, int], scale: tuple[float, float] = (1.0, 1.0)
            ) -> None:
        nonlocal with_masks
        outputs = model([im.to(device) for im, _, _ in batch])
        factor = torch.tensor([scale[0], scale[1], scale[0], scale[1]])
        for out, (_, x0, y0) in zip(outputs, batch):
            keep = out["scores"] >= settings.score_threshold
            boxes.append(out["boxes"][keep].cpu() * factor + torch.tensor([x0, y0, x0, y0], dtype=torch.float32))
            scores.append(out["scores"][keep].cpu())
            labels.append(out["labels"][keep].cpu())
            if "masks" in out:
                with_masks = True
                masks.extend(masks_from_output(out["masks"][keep], settings.mask_threshold, x0, y0, scene, scale))

    spec = settings.pixels
    with RasterSource(path, None if spec.bands is None else list(spec.bands)) as src:
        if spec.is_rgb:  # an RGB model reads 1 or 3 colour bands (an alpha band is left out)
            colour = [b for b in src.bands if src.ds.colorinterp[b - 1] != ColorInterp.alpha]
            if len(colour) > 3:
                raise DatasetError(f"{path}: has {len(colour)} bands but the model reads 3 (RGB, model.in_channels"
                                   " 3). Fix: train a model on these bands (data.bands, model.in_channels), or cut"
                                   " the scene to its RGB bands")
            src.bands = colour
        grid = tile_grid(src.height, src.width, *settings.size, overlap=settings.overlap, edge="shift")

        def batches() -> Iterator[list[tuple[Tensor, int, int]]]:
            batch: list[tuple[Tensor, int, int]] = []
            for _, tile, pixels in src.tiles(grid):
                batch.append((to_tensor(pixels, spec, str(path)), tile.x0, tile.y0))
                if len(batch) == settings.batch_size:
                    yield batch
                    batch = []
            if batch:
                yield batch

        source = prefetched(batches(), settings.prefetch)
        try:
            while True:
                asked = time.perf_counter()
                batch = next(source, None)
                waited += time.perf_counter() - asked
                if batch is None:
                    break
                run(batch, (src.width, src.height))
        finally:
            source.close()  # the reader stops before the raster closes
        if settings.full_image:
            factor = max(1.0, max(src.width, src.height) / settings.full_image_side)
            shape = (len(src.bands), max(1, round(src.height / factor)), max(1, round(src.width / factor)))
            overview = src.ds.read(src.bands, out_shape=shape, resampling=Resampling.average)
            run([(to_tensor(overview, spec, str(path)), 0, 0)], (src.width, src.height),
                scale=(src.width / shape[2], src.height / shape[1]))
        info = {"width": src.width, "height": src.height, "tiles": len(grid),
                "transform": src.transform if src.georeferenced else None,
                "crs": src.crs.to_string() if src.georeferenced else None}
    merged = merge_groups(torch.cat(boxes) if boxes else torch.zeros(0, 4), torch.cat(scores) if scores else
                          torch.zeros(0), torch.cat(labels) if labels else torch.zeros(0, dtype=torch.int64),
                          settings.method, settings.match, settings.threshold, settings.class_agnostic)
    merged_masks = None
    if with_masks:
        merged_masks = []
        for k in range(len(merged.boxes)):
            parts = [m for m in (masks[int(i)] for i in merged.members(k)) if m is not None]
            merged_masks.append(union(parts) if parts else None)
    return {"boxes": merged.boxes, "scores": merged.scores, "labels": merged.labels, "masks": merged_masks, **info,
            "wait_s": waited, "wall_s": time.perf_counter() - start}


def coco_records(pred: dict[str, Any], image_id: int, label_map: LabelMap) -> dict[str, list[dict[str, Any]]]:
    """COCO results of one scene: ``bbox`` records (xywh) and, with masks, ``segm`` records
    (RLE over the whole scene; an empty mask is an empty RLE, as for whole images)."""
    bbox, segm = [], []
    masks = pred["masks"]
    for k, ((x0, y0, x1, y1), s, lab) in enumerate(zip(pred["boxes"].tolist(), pred["scores"].tolist(),
                                                       pred["labels"].tolist())):
        common = {"image_id": image_id, "category_id": label_map.coco_id(int(lab)), "score": round(float(s), 5)}
        bbox.append({**common, "bbox": [round(x0, 3), round(y0, 3), round(x1 - x0, 3), round(y1 - y0, 3)]})
        if masks is not None:
            segm.append({**common, "segmentation": _scene_rle(masks[k], pred["height"], pred["width"])})
    return {"bbox": bbox, "segm": segm}


def _scene_rle(mask: CropMask | None, height: int, width: int) -> dict[str, Any]:
    if mask is not None:
        return scene_rle(mask, height, width)
    rle = mask_utils.frPyObjects({"counts": [height * width], "size": [height, width]}, height, width)
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def empty_masks(pred: dict[str, Any]) -> int:
    """How many detections have a mask that is empty at the threshold (their outline is the box)."""
    return 0 if pred["masks"] is None else sum(m is None for m in pred["masks"])


def detection_features(pred: dict[str, Any], label_map: LabelMap, wgs84: bool = False) -> list[dict[str, Any]]:
    """GeoJSON features of the detections in the raster's CRS, or reprojected to WGS84
    longitude/latitude (``rasterio.warp.transform_geom``), with class, category id and
    score. Boxes are Polygons; a model with masks gives MultiPolygons of the mask's pixels
    and a ``mask_pixels`` property (0: the mask is empty at the threshold and the outline
    is the box)."""
    from rasterio.warp import transform_geom

    t, masks = pred["transform"], pred["masks"]
    features = []
    for k, ((x0, y0, x1, y1), s, lab) in enumerate(zip(pred["boxes"].tolist(), pred["scores"].tolist(),
                                                       pred["labels"].tolist())):
        ring = [list(apply_affine(t, x, y)) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0))]
        geometry: dict[str, Any] = {"type": "Polygon", "coordinates": [ring]}
        properties = {"label": label_map.names[int(lab) - 1], "category_id": label_map.coco_id(int(lab)),
                      "score": float(s)}
        if masks is not None:
            mask = masks[k]
            geometry = {"type": "MultiPolygon", "coordinates": [[ring]]} if mask is None else polygons(mask, t)
            properties["mask_pixels"] = 0 if mask is None else int(mask_utils.area(mask.rle))
        if wgs84:
            geometry = {"type": geometry["type"],
                        "coordinates": _lists(transform_geom(pred["crs"], "EPSG:4326", geometry)["coordinates"])}
        features.append({"type": "Feature", "geometry": geometry, "properties": properties})
    return features


def _lists(coordinates: Any) -> Any:
    """Nested coordinate tuples as lists, as JSON writes them."""
    if isinstance(coordinates, (list, tuple)) and coordinates and isinstance(coordinates[0], (int, float)):
        return list(coordinates)
    return [_lists(c) for c in coordinates]


def write_geojson(path: Path, pred: dict[str, Any], label_map: LabelMap, wgs84: bool = False) -> None:
    """Boxes (masks, where predicted) as polygons in the raster's CRS (named in a ``crs``
    member, as GDAL reads it), or with ``wgs84`` reprojected to longitude/latitude without a
    ``crs`` member (RFC 7946)."""
    data: dict[str, Any] = {"type": "FeatureCollection"}
    if not wgs84:
        data["crs"] = {"type": "name", "properties": {"name": pred["crs"]}}
    data["features"] = detection_features(pred, label_map, wgs84)
    atomic_write_json(path, data)


def write_geopackage(path: Path, pred: dict[str, Any], label_map: LabelMap, scene: str) -> None:
    """One GeoPackage layer, ``detections``: the boxes as polygons (the masks as
    multipolygons, with ``mask_pixels``, where predicted) in the raster's CRS with ``label``,
    ``category_id``, ``score`` and ``scene`` (pyogrio, the ``geo`` extra); written to a
    temporary file beside ``path`` and moved into place."""
    require_extra("geo", "--gpkg (GeoPackage output)", ("pyogrio", "shapely"))
    import shapely
    from pyogrio.raw import write as write_layer

    features = detection_features(pred, label_map)
    geometry = np.array([shapely.to_wkb(shapely.geometry.shape(f["geometry"])) for f in features], dtype=object)
    columns = {"label": np.array([f["properties"]["label"] for f in features], dtype=object),
               "category_id": np.array([f["properties"]["category_id"] for f in features], dtype=np.int64),
               "score": np.array([f["properties"]["score"] for f in features], dtype=np.float64),
               "scene": np.array([scene] * len(features), dtype=object)}
    if pred["masks"] is not None:
        columns["mask_pixels"] = np.array([f["properties"]["mask_pixels"] for f in features], dtype=np.int64)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    tmp.unlink(missing_ok=True)
    try:
        write_layer(str(tmp), geometry, list(columns.values()), fields=list(columns), layer="detections",
                    driver="GPKG", geometry_type="Polygon" if pred["masks"] is None else "MultiPolygon",
                    crs=pred["crs"])
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def scene_picture(path: str | Path, max_side: int = 4096) -> tuple[np.ndarray, float]:
    """An (h, w, 3) uint8 RGB picture of a scene, read decimated by GDAL so that its longer
    side is at most ``max_side`` (never the whole scene at full size), and the factor that
    maps scene pixels onto it."""
    with RasterSource(path) as src:
        scale = min(1.0, max_side / max(src.width, src.height))
        h, w = max(1, round(src.height * scale)), max(1, round(src.width * scale))
        bands = (src.bands * 3)[:3] if len(src.bands) < 3 else src.bands[:3]
        pixels = src.ds.read(indexes=bands, out_shape=(3, h, w))
    if pixels.dtype != np.uint8:
        top = float(np.iinfo(pixels.dtype).max) if np.issubdtype(pixels.dtype, np.integer) else 1.0
        pixels = np.clip(pixels.astype(np.float64) / top * 255.0, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(pixels.transpose(1, 2, 0)), scale
