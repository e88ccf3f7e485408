"""YOLO labels (one ``.txt`` per image: ``class cx cy w h`` in [0, 1], or ``class x1 y1 x2 y2
...`` polygons of YOLO segmentation) <-> COCO, as Ultralytics writes and reads them."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from detimb.data.convert.coco_dict import (
    IMAGE_SUFFIXES, CocoBuilder, Conversion, converted, find_image, finite_number, image_size,
)
from detimb.data.label_files import read_label_text
from detimb.data.coco_validate import CocoRecords
from detimb.errors import DatasetError
from detimb.utils import atomic_write_text


def read_class_names(path: Path) -> list[str]:
    """One class name per line (``classes.txt``/``obj.names``), or a YAML with ``names``
    (a list, or a mapping index -> name, as Ultralytics' ``data.yaml``)."""
    if not path.is_file():
        raise DatasetError(f"{path}: class list not found. Fix: give --classes a classes.txt or data.yaml")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        names = (yaml.safe_load(read_label_text(path)) or {}).get("names")
        if isinstance(names, dict):
            names = _indexed_names(path, names)
        if not isinstance(names, list) or not names:
            raise DatasetError(f"{path}: no 'names' list. Fix: names: [class0, class1, ...]")
        names = [str(n) for n in names]
    else:
        names = [line.strip() for line in read_label_text(path).splitlines() if line.strip()]
    if not names:
        raise DatasetError(f"{path}: the class list is empty")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:  # detimb tells classes apart by name
        raise DatasetError(f"{path}: the class name(s) {', '.join(map(repr, repeated))} appear more than once, at"
                           f" indices {[i for i, n in enumerate(names) if n in repeated]}. Fix: rename them")
    return names


def _indexed_names(path: Path, names: dict[Any, Any]) -> list[Any]:
    """Ultralytics' ``names: {0: a, 1: b}``: the indices must be 0..K-1, each once."""
    keys = sorted(names, key=str)
    if not all(isinstance(k, int) and not isinstance(k, bool) for k in keys) or \
            sorted(keys) != list(range(len(keys))):
        missing = sorted(set(range(len(keys))) - set(k for k in keys if isinstance(k, int)))
        raise DatasetError(f"{path}: 'names' indices {sorted(keys, key=str)} are not 0..{len(keys) - 1}"
                           f"{f' (missing {missing})' if missing else ''}; a label's class index is its position."
                           " Fix: number the names 0, 1, 2, ... as the labels use them")
    return [names[k] for k in range(len(keys))]


def yolo_to_coco(images: Path, labels: Path, classes: Path) -> Conversion:
    """COCO from YOLO labels: every image of ``images`` (one without a label file has no
    objects), its ``labels/<stem>.txt`` read line by line."""
    names = read_class_names(classes)
    coco = CocoBuilder(names)
    for folder, flag in ((images, "--images"), (labels, "--labels")):
        if not folder.is_dir():
            raise DatasetError(f"{folder}: {flag} is not a folder. Fix: give the folder of the "
                               f"{'images' if flag == '--images' else '<image stem>.txt label files'}")
    label_files = {p.stem: p for p in sorted(labels.glob("*.txt"))}
    if not label_files:
        raise DatasetError(f"{labels}: no .txt label files (is --labels the folder YOLO's labels are in?). Fix:"
                           " give the folder of <image stem>.txt files")
    image_files = {p.stem: p for p in sorted(images.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
    for stem in sorted(label_files):
        if stem not in image_files:
            find_image(images, stem, label_files[stem])  # raises the named error
    for stem, image in sorted(image_files.items()):
        width, height = image_size(image)
        image_id = coco.add_image(image.relative_to(images).as_posix(), width, height)
        if stem not in label_files:
            continue
        for n, line in enumerate(read_label_text(label_files[stem]).splitlines(), start=1):
            parts = line.split()
            if not parts:
                continue
            where = f"{label_files[stem]}:{n}"
            cls = finite_number(parts[0], where)
            if cls != int(cls) or not 0 <= int(cls) < len(names):
                raise DatasetError(f"{where}: class index {parts[0]} is outside 0..{len(names) - 1} ({classes} has"
                                   f" {len(names)} classes). Fix: the label or the class list")
            values = [finite_number(t, where) for t in parts[1:]]
            if len(values) < 4 or (len(values) > 4 and len(values) % 2):
                raise DatasetError(f"{where}: expected 'class cx cy w h' or 'class x1 y1 x2 y2 ...', got"
                                   f" {len(values)} numbers")
            if any(not 0.0 <= v <= 1.0 for v in values):
                raise DatasetError(f"{where}: coordinates must be normalised to [0, 1], got {values}. Fix: divide"
                                   " by the image's width and height")
            if len(values) == 4:
                cx, cy, w, h = values
                xyxy = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
                coco.add_box(image_id, int(cls) + 1, xyxy, where)
            else:
                poly = [v * (width if i % 2 == 0 else height) for i, v in enumerate(values)]
                xs, ys = poly[0::2], poly[1::2]
                coco.add_box(image_id, int(cls) + 1, (min(xs), min(ys), max(xs), max(ys)), where, polygon=poly)
    return converted(coco)


def _label_path(file_name: str, records: CocoRecords) -> PurePosixPath:
    """``labels/``-relative label file of an image: its ``file_name`` with ``.txt``, keeping
    its folders (as Ultralytics mirrors ``images/`` in ``labels/``)."""
    rel = PurePosixPath(file_name.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts:
        raise DatasetError(f"{records.path}: image file_name {file_name!r} leaves the image folder; its label file"
                           " would be written outside --out. Fix: make file_name relative to the image folder")
    return rel.with_suffix(".txt")


def coco_to_yolo(records: CocoRecords, out: Path) -> dict[str, int]:
    """Write ``out/labels/<file_name>.txt`` per image (its folders kept) and
    ``out/classes.txt`` (categories in id order -> indices 0..K-1) from a validated COCO
    file (boxes past their image are already clipped, and counted). Crowd regions have no
    YOLO form and are left out (counted). Returns counts: images, boxes, crowd_skipped,
    clipped_boxes, dropped_boxes."""
    categories = sorted(records.categories, key=lambda c: c["id"])
    index = {c["id"]: i for i, c in enumerate(categories)}
    targets: dict[PurePosixPath, dict[str, Any]] = {}
    for im in records.images:
        target = _label_path(im["file_name"], records)
        if target in targets:
            raise DatasetError(f"{records.path}: images {targets[target]['file_name']!r} and {im['file_name']!r}"
                               f" would both write labels/{target}. Fix: give the images distinct names")
        targets[target] = im
    crowd, boxes = 0, 0
    (out / "labels").mkdir(parents=True, exist_ok=True)
    for target, im in targets.items():
        rows = []
        for ann in records.annotations_by_image[im["id"]]:
            if ann.get("iscrowd", 0):
                crowd += 1
                continue
            x, y, w, h = ann["bbox"]
            rows.append(f"{index[ann['category_id']]} {(x + w / 2) / im['width']:.6f} {(y + h / 2) / im['height']:.6f}"
                        f" {w / im['width']:.6f} {h / im['height']:.6f}\n")
        boxes += len(rows)
        (out / "labels" / target).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "labels" / target, "".join(rows))
    atomic_write_text(out / "classes.txt", "".join(c["name"] + "\n" for c in categories))
    return {"images": len(targets), "boxes": boxes, "crowd_skipped": crowd, "clipped_boxes": records.clipped_boxes,
            "dropped_boxes": records.dropped_boxes}
