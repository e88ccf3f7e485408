"""Read and validate a COCO detection annotation file, without modifying it.

Every problem is reported with the file, the record (index and id) and what to do about
it. Types are checked: ids, ``image_id``, ``category_id``, ``iscrowd`` (0 or 1), ``area``
and bbox entries must be numbers; a string such as ``"0"`` is an error naming the field,
never a truth value. Two defects are repaired in memory and counted (``CocoRecords.repairs``,
one summary line in ``warnings``), unless ``strict`` makes them errors: boxes that stick out
of their image are clipped for training (or rejected with ``out_of_bounds: error``), and
annotation id 0, which pycocotools' matcher reads as "no match" (a perfect detection would
count as a false positive), is renumbered past the largest id. The input file is never
rewritten.
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
    renumbered_ids: int = 0

    @property
    def repairs(self) -> dict[str, int]:
        """What validation repaired in memory, for the run folder's or report's JSON."""
        return {"clipped_boxes": self.clipped_boxes, "dropped_boxes": self.dropped_boxes,
                "renumbered_annotation_ids": self.renumbered_ids}


def _fail(path: Path, msg: str, fix: str) -> DatasetError:
    return DatasetError(f"{path}: {msg}. Fix: {fix}")


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def read_coco_json(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(
            f"annotation file not found: {path}. Fix: check the path in the config"
            " (the built-in dataset is made by `detimb-make-dataset --out data/shapes`, or"
            " `python tools/make_dataset.py --out data/shapes` in a clone)"
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


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _unique_ids(path: Path, kind: str, records: list[dict[str, Any]]) -> None:
    seen: dict[Any, int] = {}
    for i, rec in enumerate(records):
        if not _is_int(rec["id"]):
            raise _fail(path, f"{kind}[{i}] has a non-integer id {rec['id']!r}", "use integer ids")
        if rec["id"] in seen:
            raise _fail(path, f"{kind}[{i}] repeats id {rec['id']} (first used by {kind}[{seen[rec['id']]}])",
                        "give every record its own id")
        seen[rec["id"]] = i


def _unique_names(path: Path, categories: list[dict[str, Any]]) -> None:
    """Classes are reported, merged and mapped by name: two categories of one name would be
    counted as one class and their AP rows could not be told apart."""
    seen: dict[str, int] = {}
    for i, cat in enumerate(categories):
        name = str(cat["name"])
        if name in seen:
            raise _fail(path, f"categories[{i}] (id {cat['id']}) repeats the name {name!r} of categories[{seen[name]}]"
                              f" (id {categories[seen[name]]['id']})",
                        "rename one of them (the tools tell classes apart by name)")
        seen[name] = i


def _check_types(path: Path, where: str, ann: dict[str, Any]) -> None:
    for key in ("image_id", "category_id"):
        if not _is_int(ann[key]):
            raise _fail(path, f"{where} has {key} {ann[key]!r} ({type(ann[key]).__name__})",
                        f"write {key} as an integer, without quotes")
    if "iscrowd" in ann and not (isinstance(ann["iscrowd"], (int, bool)) and ann["iscrowd"] in (0, 1)):
        raise _fail(path, f"{where} has iscrowd {ann['iscrowd']!r} ({type(ann['iscrowd']).__name__})",
                    "write iscrowd as the number 0 or 1, without quotes (a string would read as true)")
    if "area" in ann and not (_is_number(ann["area"]) and ann["area"] >= 0):
        raise _fail(path, f"{where} has area {ann['area']!r}", "write area as a number >= 0, or leave it out")


def _renumber_zero_id(data: dict[str, Any]) -> tuple[dict[str, Any], int | None]:
    """A copy of ``data`` whose annotation with id 0 (ids are unique: at most one) gets
    the id past the largest one, and that new id; ``data`` itself when there is none."""
    zero = [i for i, a in enumerate(data["annotations"]) if a["id"] == 0]
    if not zero:
        return data, None
    annotations = list(data["annotations"])
    new_id = max(a["id"] for a in annotations) + 1
    annotations[zero[0]] = {**annotations[zero[0]], "id": new_id}
    return {**data, "annotations": annotations}, new_id


LVIS_IMAGE_FIELDS = ("neg_category_ids", "not_exhaustive_category_ids")
LVIS_FREQUENCIES = ("r", "c", "f")


def is_lvis_style(data: dict[str, Any]) -> bool:
    """Whether a COCO file carries LVIS's federated labels on its images."""
    return any(key in img for img in data["images"] for key in LVIS_IMAGE_FIELDS)


def _check_lvis_fields(path: Path, images: list[dict[str, Any]], categories: list[dict[str, Any]]) -> None:
    """LVIS's per-image category lists name known categories; ``frequency`` is r, c or f."""
    known = {c["id"] for c in categories}
    for i, img in enumerate(images):
        for key in LVIS_IMAGE_FIELDS:
            ids = img.get(key, [])
            if not isinstance(ids, list) or not all(_is_int(c) for c in ids):
                raise _fail(path, f"images[{i}] (id {img['id']}) has {key} {ids!r}",
                            "give a list of category ids (LVIS's format), or remove the field")
            unknown = sorted(set(ids) - known)
            if unknown:
                raise _fail(path, f"images[{i}] (id {img['id']}) {key} names category ids {unknown[:5]}, which"
                            " are not in 'categories'", "remove them or add the categories")
    for i, cat in enumerate(categories):
        if "frequency" in cat and cat["frequency"] not in LVIS_FREQUENCIES:
            raise _fail(path, f"categories[{i}] (id {cat['id']}) has frequency {cat['frequency']!r}",
                        "use LVIS's 'r' (rare), 'c' (common) or 'f' (frequent), or remove the field")


def _check_images(path: Path, images: list[dict[str, Any]], root: Path | None, check_files: bool) -> None:
    """Every image record has an id, a file name inside ``root`` (that exists, with
    ``check_files``) and a size in pixels."""
    for i, img in enumerate(images):
        _require(path, "images", i, img, ("id", "file_name", "width", "height"))
        w, h = img["width"], img["height"]
        if not (_is_number(w) and _is_number(h) and w > 0 and h > 0):
            raise _fail(path, f"images[{i}] (id {img['id']}) has width/height {w!r}/{h!r}",
                        "set the image's true size in pixels (both > 0)")
        if not isinstance(img["file_name"], str) or not img["file_name"]:
            raise _fail(path, f"images[{i}] (id {img['id']}) has file_name {img['file_name']!r}",
                        "give the image's path relative to the image folder")
        if root is None:
            continue
        file = (root / img["file_name"]).resolve()
        if not file.is_relative_to(root):
            raise _fail(path, f"images[{i}] (id {img['id']}) file_name {img['file_name']!r} escapes the image root"
                        f" {root}", "use a path relative to the image folder, without '..'")
        if check_files and not file.is_file():
            raise _fail(path, f"images[{i}] (id {img['id']}) file {file} does not exist",
                        "check data.*.img_dir in the config, or remove the record")


def _checked_annotations(path: Path, data: dict[str, Any], out_of_bounds: str
                         ) -> tuple[dict[int, list[dict[str, Any]]], int, int]:
    """The annotations by image id, each checked; boxes past their image clipped (or an
    error with ``out_of_bounds`` 'error'), boxes wholly outside dropped; and how many of each."""
    images, annotations = data["images"], data["annotations"]
    image_by_id = {img["id"]: img for img in images}
    category_ids = {cat["id"] for cat in data["categories"]}
    by_image: dict[int, list[dict[str, Any]]] = {img["id"]: [] for img in images}
    clipped = dropped = 0
    for i, ann in enumerate(annotations):
        _require(path, "annotations", i, ann, ("id", "image_id", "category_id", "bbox"))
        where = f"annotations[{i}] (id {ann['id']})"
        _check_types(path, where, ann)
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
    return by_image, clipped, dropped


def validate_coco(path: str | Path, img_dir: str | Path | None, out_of_bounds: str = "clip",
                  check_files: bool = True, strict: bool = False) -> CocoRecords:
    """Validate ``path`` against ``img_dir`` (None: no image folder, file names unchecked).
    ``out_of_bounds``: 'clip' or 'error'. ``strict``: repairs become errors."""
    path = Path(path)
    return validate_coco_data(read_coco_json(path), path, img_dir, out_of_bounds, check_files, strict)


def validate_coco_data(data: dict[str, Any], path: str | Path, img_dir: str | Path | None,
                       out_of_bounds: str = "clip", check_files: bool = True, strict: bool = False) -> CocoRecords:
    """``validate_coco`` of a COCO dict already in memory (a converter's output, before it
    is written), read as the file ``path`` (named in the errors)."""
    if out_of_bounds not in ("clip", "error"):
        raise ValueError(f"out_of_bounds must be 'clip' or 'error', got {out_of_bounds!r}")
    path = Path(path)
    images, categories, annotations = data["images"], data["categories"], data["annotations"]
    if not images:
        raise _fail(path, "no images", "list the images under 'images' (a dataset needs at least one)")
    root = Path(img_dir).resolve() if img_dir is not None else None
    check_files = check_files and root is not None

    _check_images(path, images, root, check_files)
    _unique_ids(path, "images", images)

    for i, cat in enumerate(categories):
        _require(path, "categories", i, cat, ("id", "name"))
    _unique_ids(path, "categories", categories)
    _unique_names(path, categories)
    if not categories:
        raise _fail(path, "no categories", "list the classes under 'categories'")

    _check_lvis_fields(path, images, categories)

    by_image, clipped, dropped = _checked_annotations(path, data, out_of_bounds)
    _unique_ids(path, "annotations", annotations)
    data, new_id = _renumber_zero_id(data)
    renumbered = int(new_id is not None)
    for anns in by_image.values():
        for rec in anns:
            if rec["id"] == 0:
                rec["id"] = new_id
    if strict and (clipped or dropped or renumbered):
        raise _fail(path, f"{clipped + dropped} boxes outside their image and {renumbered} annotations with id 0",
                    "fix the file, or run without --strict to repair them in memory (counted)")
    warnings = []
    if clipped or dropped or renumbered:
        warnings.append(f"{path}: repaired in memory (the file is untouched): {clipped} boxes clipped to their image,"
                        f" {dropped} wholly outside dropped, {renumbered} annotations with id 0 renumbered")
    return CocoRecords(path, data, images, categories, by_image, clipped, dropped, warnings, renumbered)


def validate_results(path: str | Path, records: Any, gt: dict[str, Any]) -> str:
    """Check a COCO results file against its ground truth before anything is scored or
    written; returns its kind, 'bbox' or 'segm'. Every detection needs an image_id and a
    category_id of the ground truth, a finite score and a box of 4 finite numbers with
    width and height > 0 (or a segmentation): pycocotools would otherwise change the
    numbers without a word (NaN scores sort anywhere; an unknown id scores 0)."""
    path = Path(path)
    if not isinstance(records, list):
        raise _fail(path, "a COCO results file is a list of detections", "write a JSON list of detections")
    if not records:
        raise _fail(path, "holds no detections, which pycocotools would score 0 without a word",
                    "check that the model produced detections (lower score_thresh?) and wrote them here")
    kind = "segm" if isinstance(records[0], dict) and "segmentation" in records[0] and "bbox" not in records[0] \
        else "bbox"
    image_ids = {im["id"] for im in gt["images"]}
    category_ids = {c["id"] for c in gt["categories"]}
    for i, det in enumerate(records):
        where = f"detection [{i}]"
        if not isinstance(det, dict):
            raise _fail(path, f"{where} is not an object", "each detection is an object")
        needs = ("image_id", "category_id", "score", "segmentation" if kind == "segm" else "bbox")
        for key in needs:
            if key not in det:
                raise _fail(path, f"{where} has no '{key}'", f"add '{key}' to every detection")
        if not _is_int(det["image_id"]) or det["image_id"] not in image_ids:
            raise _fail(path, f"{where} has image_id {det['image_id']!r}, which is not an image of the ground truth",
                        "score the results against the annotation file they were made for")
        if not _is_int(det["category_id"]) or det["category_id"] not in category_ids:
            raise _fail(path, f"{where} has category_id {det['category_id']!r}, which is not a category of the"
                        f" ground truth ({sorted(category_ids)})", "map the detections to the file's category ids")
        if not _is_number(det["score"]):
            raise _fail(path, f"{where} has score {det['score']!r}", "scores must be finite numbers")
        if kind == "bbox":
            box = det["bbox"]
            if not (isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box)):
                raise _fail(path, f"{where} bbox {box!r} is not 4 finite numbers", "write bbox as [x, y, w, h]")
            if box[2] <= 0 or box[3] <= 0:
                raise _fail(path, f"{where} bbox {box} has width or height <= 0",
                            "write bbox as [x, y, width, height] (not corners), both sizes > 0")
    if kind == "bbox":
        _refuse_other_images(path, records, gt)
    return kind


def _refuse_other_images(path: Path, records: list[dict[str, Any]], gt: dict[str, Any]) -> None:
    """Detections made for other images than the ground truth's (a scene's results scored
    against its tiles, whose ids start at 1 as well) would score 0 without a word: refused
    when most of them reach beyond their image (more than 1 px or 1% of its size)."""
    size = {im["id"]: (im["width"], im["height"]) for im in gt["images"]}
    outside = []
    for i, det in enumerate(records):
        x, y, w, h = det["bbox"]
        width, height = size[det["image_id"]]
        if x + w > width * 1.01 + 1 or y + h > height * 1.01 + 1 or x < -1 or y < -1:
            outside.append(i)
    if len(outside) > len(records) / 2:
        i = outside[0]
        det, (width, height) = records[i], size[records[i]["image_id"]]
        raise _fail(path, f"{len(outside)} of its {len(records)} detections reach beyond their image (e.g. detection"
                    f" [{i}], bbox {det['bbox']} on image {det['image_id']} of {width} x {height} px): they were"
                    " made for other images than this ground truth's (a scene's results against its tiles?)",
                    "score them against the annotation file of the images they were made on (detimb-eval --gt,"
                    " e.g. the COCO file given to detimb-infer --coco)")
