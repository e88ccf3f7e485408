"""YOLO labels (one ``.txt`` per image: ``class cx cy w h`` in [0, 1], or ``class x1 y1 x2 y2
...`` polygons of YOLO segmentation) <-> COCO, as Ultralytics writes and reads them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from detimb.data.convert.coco_dict import CocoBuilder, find_image, image_size
from detimb.errors import DatasetError
from detimb.utils import atomic_write_text


def read_class_names(path: Path) -> list[str]:
    """One class name per line (``classes.txt``/``obj.names``), or a YAML with ``names``
    (a list, or a mapping index -> name, as Ultralytics' ``data.yaml``)."""
    if not path.is_file():
        raise DatasetError(f"{path}: class list not found. Fix: give --classes a classes.txt or data.yaml")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        names = (yaml.safe_load(path.read_text()) or {}).get("names")
        if isinstance(names, dict):
            names = [names[k] for k in sorted(names)]
        if not isinstance(names, list) or not names:
            raise DatasetError(f"{path}: no 'names' list. Fix: names: [class0, class1, ...]")
        return [str(n) for n in names]
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names:
        raise DatasetError(f"{path}: the class list is empty")
    return names


def _number(token: str, where: str) -> float:
    try:
        return float(token)
    except ValueError as err:
        raise DatasetError(f"{where}: '{token}' is not a number") from err


def yolo_to_coco(images: Path, labels: Path, classes: Path) -> dict[str, Any]:
    """COCO from YOLO labels: every image of ``images`` (one without a label file has no
    objects), its ``labels/<stem>.txt`` read line by line."""
    names = read_class_names(classes)
    coco = CocoBuilder(names)
    label_files = {p.stem: p for p in sorted(labels.glob("*.txt"))}
    image_files = {p.stem: p for p in sorted(images.iterdir()) if p.suffix.lower() in
                   (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")}
    for stem in sorted(label_files):
        if stem not in image_files:
            find_image(images, stem, label_files[stem])  # raises the named error
    for stem, image in sorted(image_files.items()):
        width, height = image_size(image)
        image_id = coco.add_image(image.relative_to(images).as_posix(), width, height)
        if stem not in label_files:
            continue
        for n, line in enumerate(label_files[stem].read_text().splitlines(), start=1):
            parts = line.split()
            if not parts:
                continue
            where = f"{label_files[stem]}:{n}"
            cls = _number(parts[0], where)
            if cls != int(cls) or not 0 <= int(cls) < len(names):
                raise DatasetError(f"{where}: class index {parts[0]} is outside 0..{len(names) - 1} ({classes} has"
                                   f" {len(names)} classes). Fix: the label or the class list")
            values = [_number(t, where) for t in parts[1:]]
            if len(values) < 4 or (len(values) > 4 and len(values) % 2):
                raise DatasetError(f"{where}: expected 'class cx cy w h' or 'class x1 y1 x2 y2 ...', got"
                                   f" {len(values)} numbers")
            if any(not 0.0 <= v <= 1.0 for v in values):
                raise DatasetError(f"{where}: coordinates must be normalised to [0, 1], got {values}. Fix: divide"
                                   " by the image's width and height")
            if len(values) == 4:
                cx, cy, w, h = values
                xyxy = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
                coco.add_box(image_id, int(cls) + 1, xyxy)
            else:
                poly = [v * (width if i % 2 == 0 else height) for i, v in enumerate(values)]
                xs, ys = poly[0::2], poly[1::2]
                coco.add_box(image_id, int(cls) + 1, (min(xs), min(ys), max(xs), max(ys)), polygon=poly)
    return coco.to_dict()


def coco_to_yolo(coco: dict[str, Any], out: Path) -> dict[str, int]:
    """Write ``out/labels/<stem>.txt`` per image and ``out/classes.txt`` (categories in id
    order -> indices 0..K-1). Crowd regions have no YOLO form and are left out (counted).
    Returns counts: images, boxes, crowd_skipped."""
    categories = sorted(coco["categories"], key=lambda c: c["id"])
    index = {c["id"]: i for i, c in enumerate(categories)}
    images = {im["id"]: im for im in coco["images"]}
    lines: dict[int, list[str]] = {i: [] for i in images}
    crowd = 0
    for ann in coco["annotations"]:
        if ann.get("iscrowd", 0):
            crowd += 1
            continue
        im = images[ann["image_id"]]
        x, y, w, h = ann["bbox"]
        cx, cy = (x + w / 2) / im["width"], (y + h / 2) / im["height"]
        lines[ann["image_id"]].append(f"{index[ann['category_id']]} {cx:.6f} {cy:.6f} {w / im['width']:.6f}"
                                      f" {h / im['height']:.6f}")
    (out / "labels").mkdir(parents=True, exist_ok=True)
    for image_id, rows in lines.items():
        stem = Path(images[image_id]["file_name"]).stem
        atomic_write_text(out / "labels" / f"{stem}.txt", "".join(r + "\n" for r in rows))
    atomic_write_text(out / "classes.txt", "".join(c["name"] + "\n" for c in categories))
    return {"images": len(images), "boxes": sum(len(r) for r in lines.values()), "crowd_skipped": crowd}
