"""Training batches as the model sees them (after augmentation, resampling and copy-paste),
drawn with their ground truth: a look at the labels before trusting a run, as Ultralytics'
``train_batch*.jpg``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from detimb.data.label_map import LabelMap
from detimb.data.pixels import display_rgb
from detimb.visualization.drawing import LabelText, draw_class_map, draw_detections, mosaic, titled
from detimb.visualization.pictures import save_picture

BATCH_PICTURES = 3  # the first training batches of a run drawn into train_batches/


def _picture(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) model input (uint8 RGB, or float) -> (H, W, 3) uint8 for drawing."""
    pixels = image.detach().cpu().permute(1, 2, 0).numpy()
    return pixels if pixels.dtype == np.uint8 and pixels.shape[2] == 3 else display_rgb(pixels.astype(np.float32))


def batch_mosaic(images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]], label_map: LabelMap,
                 ignore_index: int = 255) -> np.ndarray:
    """The batch's images in a grid, each with its ground truth: boxes (and masks) labelled
    by class, or a segmentation class map with a legend; titled by image id."""
    cells = []
    for image, target in zip(images, targets):
        picture = _picture(image)
        if "boxes" in target:
            labels = target["labels"].tolist()
            masks = target["masks"].numpy().astype(bool) if "masks" in target else None
            picture = draw_detections(picture, target["boxes"].numpy(),
                                      np.array([label_map.coco_id(k) for k in labels], dtype=np.int64),
                                      [label_map.names[k - 1] for k in labels], masks=masks, labels=LabelText.CLASS)
        elif "mask" in target:
            lut = np.array([0, *label_map.coco_ids], dtype=np.int64)
            labels = target["mask"].numpy()
            ids = np.where((labels > 0) & (labels != ignore_index), lut[np.clip(labels, 0, len(lut) - 1)], 0)
            picture = draw_class_map(picture, ids, dict(zip(label_map.coco_ids, label_map.names)))
        cells.append(titled(picture, f"image {int(target['image_id'])}"))
    return mosaic(cells)


def write_batch_mosaic(path: Path, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]],
                       label_map: LabelMap, ignore_index: int = 255) -> None:
    save_picture(path, batch_mosaic(images, targets, label_map, ignore_index))
