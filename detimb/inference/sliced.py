"""Sliced inference: a detector over the tiles of a large scene, predictions merged back.

The scene is read tile by tile or in row bands (``detimb.data.tiling.raster``) by a
background thread, tiles go through the model in batches, their boxes are shifted by the
tile origin, an optional full-image pass over a decimated overview is added, and
overlapping boxes are merged (``detimb.inference.merge``). Instance masks (Mask R-CNN) are
kept as crops and merged with their boxes (``detimb.inference.scene_masks``). The result, a
``ScenePrediction``, is in the scene's pixels; ``detimb.inference.geo`` writes it as map
features for georeferenced rasters.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch import Tensor, nn

from detimb.data.label_map import LabelMap
from detimb.data.pixels import RGB, PixelSpec
from detimb.data.tiling.grid import Tile, tile_grid
from detimb.data.tiling.raster import RasterSource
from detimb.errors import DatasetError, OptionError
from detimb.inference.merge import merge_groups
from detimb.inference.prefetch import prefetched
from detimb.inference.scene_masks import CropMask, masks_from_output, scene_rle, union


@dataclass(frozen=True, kw_only=True)
class SliceSettings:
    """How a scene is cut, run and merged.

    size: tile (h, w). overlap: ratio (< 1) or pixels. batch_size: tiles per forward pass.
    full_image: add a pass over the scene read decimated so that its longer side is at most
    ``full_image_side``. method: nms | greedy_nmm; match: iou | ios above ``threshold``;
    class_agnostic: merge across classes. score_threshold: tile detections below it are
    dropped before merging. prefetch: batches a background thread reads ahead. pixels: the
    bands and scaling the model was trained on (from its config). mask_threshold: the
    probability above which a predicted mask's pixel is in the mask."""

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

    def __post_init__(self) -> None:
        # the Python API's door (the tool's flags in brackets): a value outside these would run
        # and silently return nothing (a score threshold of 1) or fail mid-scene
        for ok, name, accepts, value in (
                (self.batch_size >= 1, "batch_size (--batch-size)", "an integer >= 1", self.batch_size),
                (0.0 <= self.score_threshold < 1.0, "score_threshold (--score-thr)",
                 "in [0, 1): a score must be able to pass it", self.score_threshold),
                (0.0 <= self.threshold <= 1.0, "threshold (--match-thr)", "in [0, 1]", self.threshold),
                (0.0 <= self.mask_threshold < 1.0, "mask_threshold (--mask-thr)", "in [0, 1)", self.mask_threshold),
                (self.full_image_side >= 1, "full_image_side", "an integer >= 1", self.full_image_side),
                (self.prefetch >= 0, "prefetch", "an integer >= 0", self.prefetch)):
            if not ok:
                raise OptionError(f"{name} must be {accepts}, got {value}")


@dataclass
class ScenePrediction:
    """One scene's merged detections. boxes (N, 4) xyxy in scene pixels, scores (N,),
    labels (N,) model labels (1..K). masks: for a model that predicts masks, N ``CropMask``
    in scene pixels (the union of each merged box's members; None where the mask is empty),
    else None. width, height: the scene's size; transform, crs: its georeferencing (None
    when it has none); tiles: how many were run; wait_s / wall_s: the seconds spent waiting
    for pixels and in all."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    masks: list[CropMask | None] | None
    width: int
    height: int
    transform: Any
    crs: str | None
    tiles: int
    wait_s: float
    wall_s: float

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def empty_masks(self) -> int:
        """How many detections have a mask that is empty at the threshold (their outline is the box)."""
        return 0 if self.masks is None else sum(m is None for m in self.masks)


def to_tensor(pixels: np.ndarray, spec: PixelSpec = RGB, source: str = "scene") -> Tensor:
    """(bands, h, w) raster pixels -> the model's input, by ``PixelSpec.convert`` (its bands
    and scaling; integers by their type's maximum by default; a band count other than the
    model's is a named error). An RGB model reads one band as grey (repeated three times)."""
    if spec.is_rgb and pixels.shape[0] == 1:
        pixels = np.repeat(pixels, 3, axis=0)
    return torch.from_numpy(np.ascontiguousarray(spec.convert(pixels, source)))


@dataclass(frozen=True)
class _Batch:
    images: list[Tensor]
    origins: list[tuple[int, int]]  # each image's (x0, y0) in scene pixels
    scale: tuple[float, float] = (1.0, 1.0)  # scene pixels per image pixel (x, y)


@dataclass
class _TileDetections:
    """The tiles' detections in scene pixels, gathered on the CPU (the model's outputs are
    moved there first, so the shifts and the merge meet no tensor of another device)."""

    scene: tuple[int, int]  # (width, height)
    mask_threshold: float
    boxes: list[Tensor] = field(default_factory=list)
    scores: list[Tensor] = field(default_factory=list)
    labels: list[Tensor] = field(default_factory=list)
    masks: list[CropMask | None] = field(default_factory=list)
    with_masks: bool = False

    def add(self, outputs: list[dict[str, Tensor]], batch: _Batch, score_threshold: float) -> None:
        sx, sy = batch.scale
        factor = torch.tensor([sx, sy, sx, sy])
        for out, (x0, y0) in zip(outputs, batch.origins):
            keep = out["scores"] >= score_threshold
            shift = torch.tensor([x0, y0, x0, y0], dtype=torch.float32)
            self.boxes.append(out["boxes"][keep].cpu() * factor + shift)
            self.scores.append(out["scores"][keep].cpu())
            self.labels.append(out["labels"][keep].cpu())
            if "masks" in out:
                self.with_masks = True
                self.masks.extend(masks_from_output(out["masks"][keep], self.mask_threshold, x0, y0, self.scene,
                                                    batch.scale))

    def merged(self, settings: SliceSettings) -> tuple[Tensor, Tensor, Tensor, list[CropMask | None] | None]:
        result = merge_groups(torch.cat(self.boxes) if self.boxes else torch.zeros(0, 4),
                              torch.cat(self.scores) if self.scores else torch.zeros(0),
                              torch.cat(self.labels) if self.labels else torch.zeros(0, dtype=torch.int64),
                              settings.method, settings.match, settings.threshold, settings.class_agnostic)
        masks = None
        if self.with_masks:
            masks = []
            for k in range(len(result.boxes)):
                parts = [m for m in (self.masks[int(i)] for i in result.members(k)) if m is not None]
                masks.append(union(parts) if parts else None)
        return result.boxes, result.scores, result.labels, masks


def _tile_batches(src: RasterSource, grid: list[Tile], settings: SliceSettings) -> Iterator[_Batch]:
    images: list[Tensor] = []
    origins: list[tuple[int, int]] = []
    for _, tile, pixels in src.tiles(grid):
        images.append(to_tensor(pixels, settings.pixels, str(src.path)))
        origins.append((tile.x0, tile.y0))
        if len(images) == settings.batch_size:
            yield _Batch(images, origins)
            images, origins = [], []
    if images:
        yield _Batch(images, origins)


def _overview(src: RasterSource, settings: SliceSettings) -> _Batch:
    """The whole scene read decimated (longer side at most ``full_image_side``) as one image."""
    factor = max(1.0, max(src.width, src.height) / settings.full_image_side)
    h, w = max(1, round(src.height / factor)), max(1, round(src.width / factor))
    pixels = src.read_decimated(src.bands, (h, w), average=True)
    return _Batch([to_tensor(pixels, settings.pixels, str(src.path))], [(0, 0)], (src.width / w, src.height / h))


def _open_scene(path: str | Path, spec: PixelSpec) -> RasterSource:
    """The scene with the bands the model reads: an RGB model reads 1 or 3 colour bands (an
    alpha band is left out) and refuses more."""
    src = RasterSource(path, None if spec.bands is None else list(spec.bands), drop_alpha=spec.is_rgb)
    if spec.is_rgb and len(src.bands) > 3:
        src.close()
        raise DatasetError(f"{path}: has {len(src.bands)} bands but the model reads 3 (RGB, model.in_channels 3)."
                           " Fix: train a model on these bands (data.bands, model.in_channels), or cut the scene to"
                           " its RGB bands")
    return src


def _run_batches(model: nn.Module, batches: Iterator[_Batch], found: _TileDetections, settings: SliceSettings,
                 device: torch.device) -> float:
    """Run every batch, gathering its detections; returns the seconds spent waiting for pixels."""
    source = prefetched(batches, settings.prefetch)
    waited = 0.0
    try:
        while True:
            asked = time.perf_counter()
            batch = next(source, None)
            waited += time.perf_counter() - asked
            if batch is None:
                return waited
            found.add(model([im.to(device) for im in batch.images]), batch, settings.score_threshold)
    finally:
        source.close()  # the reader stops before the raster closes


@torch.no_grad()
def sliced_predict(model: nn.Module, path: str | Path, settings: SliceSettings, device: torch.device
                   ) -> ScenePrediction:
    """Merged predictions for one scene. Tiles are read window by window or in row bands
    (``RasterSource.tiles``: memory flat in scene size) by a background thread; the
    full-image pass reads a decimated overview, never the whole scene."""
    model.eval()
    start = time.perf_counter()
    with _open_scene(path, settings.pixels) as src:
        grid = tile_grid(src.height, src.width, *settings.size, overlap=settings.overlap, edge="shift")
        found = _TileDetections((src.width, src.height), settings.mask_threshold)
        waited = _run_batches(model, _tile_batches(src, grid, settings), found, settings, device)
        if settings.full_image:
            overview = _overview(src, settings)
            found.add(model([im.to(device) for im in overview.images]), overview, settings.score_threshold)
        georeferenced = src.georeferenced
        transform, crs = (src.transform, src.crs.to_string()) if georeferenced else (None, None)
        width, height = src.width, src.height
    boxes, scores, labels, masks = found.merged(settings)
    return ScenePrediction(boxes, scores, labels, masks, width, height, transform, crs, len(grid), waited,
                           time.perf_counter() - start)


def coco_records(pred: ScenePrediction, image_id: int, label_map: LabelMap) -> dict[str, list[dict[str, Any]]]:
    """COCO results of one scene: ``bbox`` records (xywh) and, with masks, ``segm`` records
    (RLE over the whole scene; an empty mask is an empty RLE, as for whole images)."""
    bbox, segm = [], []
    for k, ((x0, y0, x1, y1), s, lab) in enumerate(zip(pred.boxes.tolist(), pred.scores.tolist(),
                                                       pred.labels.tolist())):
        common = {"image_id": image_id, "category_id": label_map.coco_id(int(lab)), "score": round(float(s), 5)}
        bbox.append({**common, "bbox": [round(x0, 3), round(y0, 3), round(x1 - x0, 3), round(y1 - y0, 3)]})
        if pred.masks is not None:
            segm.append({**common, "segmentation": _scene_rle(pred.masks[k], pred.height, pred.width)})
    return {"bbox": bbox, "segm": segm}


def _scene_rle(mask: CropMask | None, height: int, width: int) -> dict[str, Any]:
    if mask is not None:
        return scene_rle(mask, height, width)
    rle = mask_utils.frPyObjects({"counts": [height * width], "size": [height, width]}, height, width)
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
