"""``tools/convert.py``: YOLO, Pascal VOC and DOTA labels to COCO, and COCO to YOLO."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from detimb.cli.common import run_cli
from detimb.data.coco_validate import validate_coco, validate_coco_data
from detimb.data.convert import coco_to_yolo, dota_to_coco, voc_to_coco, yolo_to_coco
from detimb.data.convert.voc import DIFFICULT
from detimb.data.convert.yolo import read_class_names
from detimb.errors import InputError
from detimb.utils import atomic_write_json, not_an_input


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Convert dataset labels to COCO (or COCO to YOLO). Inputs are never"
                                            " modified; images are not copied (file_name is relative to --images).")
    sub = p.add_subparsers(dest="command", required=True)
    y = sub.add_parser("yolo2coco", help="YOLO txt labels (+ class list) -> COCO JSON")
    y.add_argument("--images", required=True)
    y.add_argument("--labels", required=True, help="folder of <image stem>.txt")
    y.add_argument("--classes", required=True, help="classes.txt (one name per line) or data.yaml (names)")
    v = sub.add_parser("voc2coco", help="Pascal VOC XML -> COCO JSON")
    v.add_argument("--xml", required=True, help="folder of .xml files (VOC's Annotations/)")
    v.add_argument("--images", help="image folder (checks the images; reads sizes the XML lacks)")
    d = sub.add_parser("dota2coco", help="DOTA oriented boxes -> COCO JSON (axis-aligned, polygon kept)")
    d.add_argument("--images", required=True)
    d.add_argument("--labels", required=True, help="folder of labelTxt .txt files")
    for q in (v, d):
        q.add_argument("--classes", help="class list fixing the category order (default: names found, sorted)")
        q.add_argument("--difficult", choices=DIFFICULT, default="keep",
                       help="difficult objects: keep (default), crowd (ignored by evaluation) or skip")
    for q in (y, v, d):
        q.add_argument("--out", required=True, help="the COCO JSON to write")
    c = sub.add_parser("coco2yolo", help="COCO JSON -> YOLO labels/ and classes.txt")
    c.add_argument("--coco", required=True)
    c.add_argument("--out", required=True, help="output folder")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_cli(lambda: convert(args))


def convert(args: argparse.Namespace) -> int | None:
    if args.command == "coco2yolo":
        coco_file = Path(args.coco)
        if Path(args.out).resolve() == coco_file.resolve():
            raise InputError(f"--out {args.out}: is the input COCO file; the YOLO labels go to a folder. Fix: give an"
                             " output folder")
        counts = coco_to_yolo(validate_coco(coco_file, None), Path(args.out))
        print(f"{counts['images']} images, {counts['boxes']} boxes -> {args.out}/labels"
              f" ({counts['crowd_skipped']} crowd regions left out: YOLO has no crowd form; {counts['clipped_boxes']}"
              f" boxes clipped to their image, {counts['dropped_boxes']} wholly outside left out)")
        return 0
    out = not_an_input(args.out, [args.classes], "--out")  # before reading anything; the other inputs are folders
    if args.command == "yolo2coco":
        conversion = yolo_to_coco(Path(args.images), Path(args.labels), Path(args.classes))
    else:
        classes = read_class_names(Path(args.classes)) if args.classes else None
    if args.command == "voc2coco":
        conversion = voc_to_coco(Path(args.xml), Path(args.images) if args.images else None, classes, args.difficult)
    elif args.command == "dota2coco":
        conversion = dota_to_coco(Path(args.images), Path(args.labels), classes, args.difficult)
    coco = conversion.data
    validate_coco_data(coco, out, None)  # what detimb would refuse to read is never written
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, coco)
    print(f"{len(coco['images'])} images, {len(coco['annotations'])} annotations, {len(coco['categories'])}"
          f" categories -> {out}")
    if conversion.left_out:
        print(f"left out: {conversion.left_out}")


if __name__ == "__main__":
    sys.exit(main())
