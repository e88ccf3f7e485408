"""Building a COCO dict image by image, the part every converter shares."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from detimb.errors import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image's header, without decoding its pixels."""
    try:
        with Image.open(path) as im:
            return im.size
    except FileNotFoundError as err:
        raise DatasetError(f"{path}: image not found. Fix: put the image beside its label, or remove the label"
                           " file") from err
    except (UnidentifiedImageError, OSError) as err:
        raise DatasetError(f"{path}: not a readable image ({err})") from err


def find_image(images: Path, stem: str, label_file: Path) -> Path:
    """The image of ``images`` named ``stem`` with any common suffix."""
    for suffix in IMAGE_SUFFIXES:
        for candidate in (images / f"{stem}{suffix}", images / f"{stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    raise DatasetError(f"{label_file}: no image named {stem}.* in {images}. Fix: put the image there, or remove the"
                       " label file")


def finite_number(token: str, where: str) -> float:
    """``token`` as a finite float, or an error naming ``where`` (a file and line or element)."""
    try:
        value = float(token)
    except (TypeError, ValueError) as err:
        raise DatasetError(f"{where}: '{token}' is not a number") from err
    if not math.isfinite(value):
        raise DatasetError(f"{where}: '{token}' is not a finite number. Fix: correct or remove the object")
    return value


def polygon_area(flat: list[float]) -> float:
    """Shoelace area of a polygon given as [x1, y1, x2, y2, ...]."""
    xs, ys = flat[0::2], flat[1::2]
    n = len(xs)
    return abs(sum(xs[i] * ys[(i + 1) % n] - xs[(i + 1) % n] * ys[i] for i in range(n))) / 2.0


class CocoBuilder:
    """Accumulates images, annotations and categories with ids from 1. Boxes without area
    (zero width or height) are left out and counted in ``degenerate`` by where they came from,
    for the converter to report: detimb's validator refuses them."""

    def __init__(self, category_names: list[str]) -> None:
        self.categories = [{"id": i + 1, "name": n, "supercategory": ""} for i, n in enumerate(category_names)]
        self.by_name = {c["name"]: c["id"] for c in self.categories}
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []
        self.degenerate: list[str] = []

    def add_image(self, file_name: str, width: int, height: int) -> int:
        image_id = len(self.images) + 1
        self.images.append({"id": image_id, "file_name": file_name, "width": int(width), "height": int(height)})
        return image_id

    def add_box(self, image_id: int, category_id: int, xyxy: tuple[float, float, float, float], where: str,
                polygon: list[float] | None = None, iscrowd: int = 0) -> None:
        x0, y0, x1, y1 = (float(v) for v in xyxy)
        if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
            raise DatasetError(f"{where}: box {xyxy} is not finite. Fix: correct or remove the object")
        if x1 <= x0 or y1 <= y0:
            self.degenerate.append(where)
            return
        ann: dict[str, Any] = {"id": len(self.annotations) + 1, "image_id": image_id, "category_id": category_id,
                               "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": iscrowd}
        if polygon is not None:
            ann["segmentation"] = [[float(v) for v in polygon]]
            ann["area"] = polygon_area(polygon)
        else:
            ann["area"] = (x1 - x0) * (y1 - y0)
        self.annotations.append(ann)

    def to_dict(self) -> dict[str, Any]:
        return {"images": self.images, "annotations": self.annotations, "categories": self.categories}

    def repair_note(self) -> str | None:
        """What the conversion left out, for the console; None when nothing."""
        if not self.degenerate:
            return None
        return (f"{len(self.degenerate)} boxes with zero width or height left out (first: {self.degenerate[0]});"
                " a box needs an area")


@dataclass(frozen=True)
class Conversion:
    """A converter's COCO dict and what it left out (None: nothing), for the console."""

    data: dict[str, Any]
    left_out: str | None


def converted(builder: CocoBuilder) -> Conversion:
    return Conversion(builder.to_dict(), builder.repair_note())
