"""Read and validate a COCO detection annotation file, without modifying it.

Every problem is reported with the file, the record (index and id) and what to do about
it. Boxes that stick out of their image are clipped (and counted) or rejected, as the
caller asks; the input file is never rewritten.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from detimb.errors import DatasetError


@dataclass
class CocoRecords:
    """A validated COCO file: plain records plus what validation had to do."""

    path: Path
    data: dict[str, Any]
    images: list[dict[str, Any]]
    categories: list[dict[str, Any]]
    annotations_by_image: dict[int, list[dict[str, Any]]]
    clipped_boxes: int = 0
    dropped_boxes: int = 0
    warnings: list[str] = field(default_factory=list)


def _fail(path: Path, msg: str, fix: str) -> DatasetError:
    return DatasetError(f"{path}: {msg}. Fix: {fix}")


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def read_coco_json(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(
            f"annotation file not found: {path}. Fix: check the path in the config"
            " (the built-in dataset is made by `python tools/make_dataset.py --out data/shapes`)"
        )
    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise _fail(path, f"not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})",
                    "repair or regenerate the file") from err
    except UnicodeDecodeError as err:
        raise _fail(path, "not a UTF-8 text file", "point the config at the COCO .json file") from err
    if not isinstance(data, dict):
        raise _fail(path, f"top level is a {type(data).__name__}, not an object",
                    "a COCO file is an object with images, annotations and categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise _fail(path, f"missing or non-list '{key}'", f"add a '{key}' list (it may be empty for annotations)")
    return data


def _require(path: Path, kind: str, i: int, rec: Any, keys: tuple[str, ...]) -> None:
    if not isinstance(rec, dict):
        raise _fail(path, f"{kind}[{i}] is not an object", f"each entry of '{kind}' must be an object")
    for key in keys:
        if key not in rec:
            raise _fail(path, f"{kind}[{i}] (id {rec.get('id', '?')}) has no '{key}'", f"add '{key}' to that record")


def _unique_ids(path: Path, kind: str, records: list[dict[str, Any]]) -> None:
    seen: dict[Any, int] = {}
    for i, rec in enumerate(records):
        if not isinstance(rec["id"], int) or isinstance(rec["id"], bool):
            raise _fail(path, f"{kind}[{i}] has a non-integer id {rec['id']!r}", "use integer ids")
        if rec["id"] in seen:
            raise _fail(path, f"{kind}[{i}] repeats id {rec['id']} (first used by {kind}[{seen[rec['id']]}])",
                        "give every record its own id")
        seen[rec["id"]] = i


def validate_coco(path: str | Path, img_dir: str | Path, out_of_bounds: str = "clip",
                  check_files: bool = True) -> CocoRecords:
    """Validate ``path`` against ``img_dir``. ``out_of_bounds``: 'clip' or 'error'."""
    if out_of_bounds not in ("clip", "error"):
        raise ValueError(f"out_of_bounds must be 'clip' or 'error', got {out_of_bounds!r}")
    path = Path(path)
    data = read_coco_json(path)
    images, categories, annotations = data["images"], data["categories"], data["annotations"]
    root = Path(img_dir).resolve()

    for i, img in enumerate(images):
        _require(path, "images", i, img, ("id", "file_name", "width", "height"))
        w, h = img["width"], img["height"]
        if not (_is_number(w) and _is_number(h) and w > 0 and h > 0):
            raise _fail(path, f"images[{i}] (id {img['id']}) has width/height {w!r}/{h!r}",
                        "set the image's true size in pixels (both > 0)")
        file = (root / img["file_name"]).resolve()
        if not file.is_relative_to(root):
            raise _fail(path, f"images[{i}] (id {img['id']}) file_name {img['file_name']!r} escapes the image root"
                        f" {root}", "use a path relative to the image folder, without '..'")
        if check_files and not file.is_file():
            raise _fail(path, f"images[{i}] (id {img['id']}) file {file} does not exist",
                        "check data.*.img_dir in the config, or remove the record")
    _unique_ids(path, "images", images)

    for i, cat in enumerate(categories):
        _require(path, "categories", i, cat, ("id", "name"))
    _unique_ids(path, "categories", categories)
    if not categories:
        raise _fail(path, "no categories", "list the classes under 'categories'")

    image_by_id = {img["id"]: img for img in images}
    category_ids = {cat["id"] for cat in categories}
    by_image: dict[int, list[dict[str, Any]]] = {img["id"]: [] for img in images}
    clipped = dropped = 0
    for i, ann in enumerate(annotations):
        _require(path, "annotations", i, ann, ("id", "image_id", "category_id", "bbox"))
        where = f"annotations[{i}] (id {ann['id']})"
        if ann["image_id"] not in image_by_id:
            raise _fail(path, f"{where} refers to image_id {ann['image_id']}, which is not in 'images'",
                        "add the image record or remove the annotation")
        if ann["category_id"] not in category_ids:
            raise _fail(path, f"{where} has category_id {ann['category_id']}, which is not in 'categories'",
                        "add the category or map the annotation to a listed one")
        box = ann["bbox"]
        if not (isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box)):
            raise _fail(path, f"{where} bbox {box!r} is not 4 finite numbers", "write bbox as [x, y, width, height]")
        x, y, w, h = box
        if w <= 0 or h <= 0:
            raise _fail(path, f"{where} bbox {box} has width or height <= 0", "fix or remove the annotation")
        img = image_by_id[ann["image_id"]]
        x0, y0 = max(0.0, x), max(0.0, y)
        x1, y1 = min(float(img["width"]), x + w), min(float(img["height"]), y + h)
        record = dict(ann)
        if (x0, y0, x1, y1) != (x, y, x + w, y + h):
            if out_of_bounds == "error":
                raise _fail(path, f"{where} bbox {box} lies outside its image {img['file_name']}"
                            f" ({img['width']}x{img['height']})",
                            "fix the box, or set data.<split>.out_of_bounds: clip")
            if x1 <= x0 or y1 <= y0:
                dropped += 1
                continue
            clipped += 1
            record["bbox"] = [x0, y0, x1 - x0, y1 - y0]
        by_image[ann["image_id"]].append(record)
    _unique_ids(path, "annotations", annotations)

    warnings = []
    if clipped or dropped:
        warnings.append(f"{path}: {clipped} boxes clipped to their image, {dropped} boxes wholly outside dropped")
    return CocoRecords(path, data, images, categories, by_image, clipped, dropped, warnings)
