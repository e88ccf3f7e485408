"""Pascal VOC XML annotations -> COCO.

Boxes follow detectron2's VOC reader (``detectron2/data/datasets/pascal_voc.py``): VOC's
1-based inclusive pixel corners become ``[xmin - 1, ymin - 1, xmax, ymax]``, so a COCO
box is ``[xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1]``. ``difficult`` objects are
kept (detectron2's choice), marked crowd (ignored by COCO evaluation), or skipped.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from detimb.data.convert.coco_dict import CocoBuilder, Conversion, converted, finite_number, image_size
from detimb.errors import DatasetError

DIFFICULT = ("keep", "crowd", "skip")


def _text(node: ET.Element, tag: str, where: Path) -> str:
    found = node.find(tag)
    if found is None or found.text is None:
        raise DatasetError(f"{where}: <{node.tag}> has no <{tag}>")
    return found.text.strip()


def _coord(node: ET.Element, tag: str, where: Path) -> float:
    return finite_number(_text(node, tag, where), f"{where}: <{tag}>")


def voc_to_coco(xml_dir: Path, images: Path | None = None, classes: list[str] | None = None,
                difficult: str = "keep") -> Conversion:
    """COCO from every ``*.xml`` of ``xml_dir``. ``images``: where the images are (to check
    them, and to read a size the XML lacks); ``classes``: the category order (default: the
    names found, sorted)."""
    if difficult not in DIFFICULT:
        raise DatasetError(f"difficult must be one of {', '.join(DIFFICULT)}, got {difficult!r}")
    files = sorted(xml_dir.glob("*.xml"))
    if not files:
        raise DatasetError(f"{xml_dir}: no .xml annotation files")
    parsed = []
    for path in files:
        try:
            parsed.append((path, ET.parse(path).getroot()))
        except ET.ParseError as err:
            raise DatasetError(f"{path}: not valid XML ({err})") from err
    found = sorted({_text(obj, "name", path) for path, root in parsed for obj in root.iter("object")})
    names = list(classes) if classes else found
    unknown = sorted(set(found) - set(names))
    if unknown:
        raise DatasetError(f"{xml_dir}: classes {unknown} are not in the class list. Fix: add them to --classes")
    coco = CocoBuilder(names)
    for path, root in parsed:
        file_name = _text(root, "filename", path)
        size = root.find("size")
        if images is not None and not (images / file_name).is_file():
            raise DatasetError(f"{path}: its image {images / file_name} does not exist. Fix: --images, or the XML's"
                               " <filename>")
        if size is not None and size.find("width") is not None:
            width, height = int(_coord(size, "width", path)), int(_coord(size, "height", path))
        elif images is not None:
            width, height = image_size(images / file_name)
        else:
            raise DatasetError(f"{path}: no <size>. Fix: pass --images so the size is read from the image")
        image_id = coco.add_image(file_name, width, height)
        for k, obj in enumerate(root.iter("object")):
            hard = obj.find("difficult") is not None and _text(obj, "difficult", path) == "1"
            if hard and difficult == "skip":
                continue
            box = obj.find("bndbox")
            if box is None:
                raise DatasetError(f"{path}: an <object> has no <bndbox>")
            x0, y0, x1, y1 = (_coord(box, t, path) for t in ("xmin", "ymin", "xmax", "ymax"))
            if x1 < x0 or y1 < y0:
                raise DatasetError(f"{path}: box {x0, y0, x1, y1} has xmax < xmin or ymax < ymin")
            coco.add_box(image_id, coco.by_name[_text(obj, "name", path)], (x0 - 1, y0 - 1, x1, y1),
                         f"{path}: object {k + 1}", iscrowd=int(hard and difficult == "crowd"))
    return converted(coco)
