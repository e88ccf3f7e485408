"""DOTA oriented boxes -> COCO (axis-aligned).

DOTA's ``labelTxt/<image>.txt`` lines are ``x1 y1 x2 y2 x3 y3 x4 y4 category difficult``
(image coordinates; optional ``imagesource:`` and ``gsd:`` header lines). Each quadrilateral
becomes its axis-aligned bounding box, and the polygon is kept as the segmentation (area:
the polygon's), so tiling and Mask R-CNN can still use the oriented shape. ``difficult``
objects are kept, marked crowd, or skipped.
"""

from __future__ import annotations

from pathlib import Path

from detimb.data.convert.coco_dict import (
    CocoBuilder, Conversion, converted, find_image, finite_number, image_size,
)
from detimb.data.label_files import read_label_text
from detimb.data.convert.voc import DIFFICULT
from detimb.errors import DatasetError


def _objects(path: Path) -> list[tuple[list[float], str, bool, int]]:
    out = []
    for n, line in enumerate(read_label_text(path).splitlines(), start=1):
        parts = line.split()
        if not parts or parts[0].startswith(("imagesource", "gsd")):
            continue
        if len(parts) < 9:
            raise DatasetError(f"{path}:{n}: expected 'x1 y1 x2 y2 x3 y3 x4 y4 category [difficult]', got"
                               f" {len(parts)} fields")
        poly = [finite_number(v, f"{path}:{n}") for v in parts[:8]]
        out.append((poly, parts[8], len(parts) > 9 and parts[9] == "1", n))
    return out


def dota_to_coco(images: Path, labels: Path, classes: list[str] | None = None,
                 difficult: str = "keep") -> Conversion:
    """COCO from ``labels/*.txt`` and their images in ``images`` (same stem)."""
    if difficult not in DIFFICULT:
        raise DatasetError(f"difficult must be one of {', '.join(DIFFICULT)}, got {difficult!r}")
    files = sorted(labels.glob("*.txt"))
    if not files:
        raise DatasetError(f"{labels}: no .txt label files")
    parsed = [(path, _objects(path)) for path in files]
    found = sorted({name for _, objs in parsed for _, name, _, _ in objs})
    names = list(classes) if classes else found
    coco = CocoBuilder(names)
    for path, objs in parsed:
        image = find_image(images, path.stem, path)
        width, height = image_size(image)
        image_id = coco.add_image(image.relative_to(images).as_posix(), width, height)
        for poly, name, hard, n in objs:
            if name not in coco.by_name:
                raise DatasetError(f"{path}:{n}: class '{name}' is not in the class list. Fix: add it to --classes")
            if hard and difficult == "skip":
                continue
            xs, ys = poly[0::2], poly[1::2]
            coco.add_box(image_id, coco.by_name[name], (min(xs), min(ys), max(xs), max(ys)), f"{path}:{n}",
                         polygon=poly, iscrowd=int(hard and difficult == "crowd"))
    return converted(coco)
