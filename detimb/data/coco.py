"""COCO-format detection dataset yielding torchvision detection targets."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from pycocotools.coco import COCO
from torch.utils.data import Dataset

from detimb.data.image_samplers import EpochIndex
from detimb.data.image_cache import DecodedImageCache
from detimb.data.copy_paste import CopyPaste, CopyPasteSettings
from detimb.data.instance_masks import instance_mask, polygons_to_mask
from detimb.data.coco_validate import CocoRecords, is_lvis_style, validate_coco
from detimb.data.pixels import RGB, PixelSpec, as_uint8, read_raster, to_chw_tensor
from detimb.data.label_map import LabelMap
from detimb.data.transforms import apply_albumentations, build_albumentations
from detimb.errors import DatasetError


PASTE_STREAM = 1  # copy-paste's random stream beside the albumentations seed of an item


def coco_api(data: dict[str, Any]) -> COCO:
    """A pycocotools COCO index over an in-memory dict, without its console chatter."""
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class CocoDetection(Dataset):
    """A COCO split as ``(image, target)`` pairs for torchvision's detectors.

    ``image``: float32 tensor (3, H, W) in [0, 1], RGB. ``target``: ``boxes`` (N, 4) float32
    xyxy pixels, ``labels`` (N,) int64 in 1..K (``label_map`` gives the COCO ids),
    ``image_id`` int64, ``area`` (N,), ``iscrowd`` (N,), ``masks`` (N, H, W) uint8 when
    ``with_masks``, and, for LVIS-style files, ``neg_labels`` and ``not_exhaustive_labels``
    (int64): the labels of the image's ``neg_category_ids`` (verified absent) and
    ``not_exhaustive_category_ids``, which the federated loss uses.
    Crowd annotations are left out of training targets (as torchvision's
    references do) and kept for evaluation, which reads the original file.

    Args:
        ann_file, img_dir: the COCO json and the folder its ``file_name`` s are relative to.
        transforms: albumentations op specs (see ``detimb.data.transforms``).
        keep_empty: keep images without annotations (default True).
        out_of_bounds: 'clip' boxes to their image and count them (default) or 'error'.
        with_masks: decode polygons/RLE into masks (Mask R-CNN).
        label_map: the training set's map; pass it for a val split so labels agree.
        seed: base seed of the augmentation, varied per epoch: by the ``EpochIndex`` a loader
            passes, or by ``set_epoch`` for plain integer indices.
        pixels: the bands and scaling the model reads (``detimb.data.pixels``): the default
            reads 8-bit RGB with OpenCV; multi-band or 16-bit GeoTIFFs are read with rasterio
            and keep their bands, as float32 (C, H, W).
        cache: keep decoded images (``data.cache``, ``detimb.data.image_cache``), or None.
        max_images: keep at most this many images, evenly spaced through the file (an
            evaluation subset, ``evaluation.max_images``); ``coco`` then holds only theirs.
        uint8_images: give 8-bit RGB items as uint8 tensors (detimb's models divide them by 255
            on their device: a quarter of the bytes between loader processes and to the GPU);
            default float32 in [0, 1].
        copy_paste: paste training instances onto each item after its augmentation
            (``detimb.data.copy_paste``), or None.
    """

    def __init__(
        self,
        ann_file: str | Path,
        img_dir: str | Path,
        transforms: list[dict[str, Any]] | None = None,
        keep_empty: bool = True,
        out_of_bounds: str = "clip",
        with_masks: bool = False,
        label_map: LabelMap | None = None,
        seed: int = 0,
        pixels: PixelSpec = RGB,
        cache: DecodedImageCache | None = None,
        uint8_images: bool = False,
        max_images: int | None = None,
        copy_paste: CopyPasteSettings | None = None,
    ) -> None:
        self.records: CocoRecords = validate_coco(ann_file, img_dir, out_of_bounds)
        self.img_dir = Path(img_dir)
        self.label_map = label_map or LabelMap.from_categories(self.records.categories)
        own = {c["id"] for c in self.records.categories}
        if not own <= set(self.label_map.coco_ids):
            extra = sorted(own - set(self.label_map.coco_ids))
            raise DatasetError(f"{ann_file}: category ids {extra} are not in the training set's categories."
                               " Fix: use the same categories in every split")
        self.with_masks = with_masks
        self.pixels = pixels
        self.cache = cache
        self.uint8_images = uint8_images
        self.pipeline = build_albumentations(list(transforms or []))
        self.seed = seed
        self.epoch = 0
        self.images = [img for img in self.records.images
                       if keep_empty or self._training_annotations(img["id"])]
        self.subset = max_images is not None and max_images < len(self.images)
        if self.subset:
            picks = np.unique(np.linspace(0, len(self.images) - 1, int(max_images)).round().astype(int))
            self.images = [self.images[i] for i in picks]
        self._coco: COCO | None = None
        self.lvis_style = is_lvis_style(self.records.data)
        self.copy_paste = None if copy_paste is None else \
            CopyPaste(self.images, self._training_annotations, self.label_map.label, copy_paste)

    @property
    def coco(self) -> COCO:
        """The split's ground truth, as written in its file (only the kept images' with
        ``max_images``), for pycocotools evaluation."""
        if self._coco is None:
            data = self.records.data
            if self.subset:
                kept = {im["id"] for im in self.images}
                data = {**data, "images": [im for im in data["images"] if im["id"] in kept],
                        "annotations": [a for a in data["annotations"] if a["image_id"] in kept]}
            self._coco = coco_api(data)
        return self._coco

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.images)

    def _training_annotations(self, image_id: int) -> list[dict[str, Any]]:
        return [a for a in self.records.annotations_by_image[image_id] if not a.get("iscrowd", 0)]

    def load_image(self, info: dict[str, Any]) -> np.ndarray:
        """(H, W, 3) uint8 RGB, or (H, W, C) float32 model input for a non-RGB ``pixels``;
        from the decoded-image cache when there is one."""
        path = self.img_dir / info["file_name"]
        if self.cache is not None:
            return self.cache.get(path, lambda: self._decode(info, path))
        return self._decode(info, path)

    def _decode(self, info: dict[str, Any], path: Path) -> np.ndarray:
        if not self.pixels.is_rgb:
            image = read_raster(path, self.pixels)
            if image.shape[:2] != (info["height"], info["width"]):
                raise DatasetError(f"{self.records.path}: image id {info['id']} file {path} is"
                                   f" {image.shape[1]}x{image.shape[0]} but the record says"
                                   f" {info['width']}x{info['height']}. Fix: correct width/height in the record")
            return image
        image = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)  # 16-bit read as the API reads it
        if image is None:
            raise DatasetError(f"{self.records.path}: image id {info['id']} file {path} is missing or cannot be"
                               " decoded. Fix: restore the file or remove its record")
        if image.shape[:2] != (info["height"], info["width"]):
            raise DatasetError(f"{self.records.path}: image id {info['id']} file {path} is"
                               f" {image.shape[1]}x{image.shape[0]} but the record says"
                               f" {info['width']}x{info['height']}. Fix: correct width/height in the record")
        return cv2.cvtColor(as_uint8(image, f"{self.records.path}: image id {info['id']} file {path}", DatasetError),
                            cv2.COLOR_BGR2RGB)

    def __getitem__(self, key: int | EpochIndex) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        epoch, index = (self.epoch, key) if isinstance(key, int) else key
        info = self.images[index]
        image = self.load_image(info)
        anns = self._training_annotations(info["id"])
        boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                          for a in anns], dtype=np.float32).reshape(-1, 4)
        labels = np.array([self.label_map.label(a["category_id"]) for a in anns], dtype=np.int64)
        areas = np.array([a.get("area", a["bbox"][2] * a["bbox"][3]) for a in anns], dtype=np.float32)
        sources = []  # drawn first: an item that receives nothing decodes no masks for it
        if self.copy_paste is not None:
            sources = self.copy_paste.draw(np.random.default_rng([self.seed % 2**32, epoch, index, PASTE_STREAM]),
                                           index)
        masks = None
        if sources:  # occlusion needs every object's pixels: its box where it has no mask
            masks = [instance_mask(a, info["height"], info["width"]) for a in anns]
        elif self.with_masks:
            masks = [polygons_to_mask(a["segmentation"], info["height"], info["width"]) for a in anns]
        if self.pipeline is not None:
            seed = (self.seed * 1_000_003 + epoch * 10_007 + index) % (2**32)
            image, boxes, kept, masks = apply_albumentations(self.pipeline, image, boxes, masks, seed)
            labels, areas = labels[kept], areas[kept]
        pasted_labels: set[int] = set()
        if sources and self.copy_paste is not None and masks is not None:
            pasted = self.copy_paste.apply(image, boxes, labels, masks, areas, sources, self.load_image)
            image, boxes, labels, areas = pasted.image, pasted.boxes, pasted.labels, pasted.areas
            masks = pasted.masks if self.with_masks else None
            pasted_labels = {int(x) for x in labels[len(labels) - pasted.pasted:]}
        target = {
            "boxes": torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32)).reshape(-1, 4),
            "labels": torch.from_numpy(labels),
            "image_id": torch.tensor(info["id"], dtype=torch.int64),
            "area": torch.from_numpy(areas),
            "iscrowd": torch.zeros(len(labels), dtype=torch.int64),
        }
        if self.lvis_style:
            for key, field in (("neg_labels", "neg_category_ids"), ("not_exhaustive_labels",
                                                                    "not_exhaustive_category_ids")):
                target[key] = torch.tensor([label for c in info.get(field, []) if (label := self.label_map.label(c))
                                            not in pasted_labels], dtype=torch.int64)  # a pasted class is present
        if masks is not None:
            h, w = image.shape[:2]
            target["masks"] = torch.from_numpy(np.stack(masks)) if masks else torch.zeros((0, h, w), dtype=torch.uint8)
        return to_chw_tensor(image, keep_uint8=self.uint8_images), target


def collate(batch: list[tuple[torch.Tensor, dict[str, torch.Tensor]]]) -> tuple[list, list]:
    """Detection batches are lists: images differ in size and box count."""
    images, targets = zip(*batch) if batch else ((), ())
    return list(images), list(targets)
