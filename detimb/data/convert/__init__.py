"""Converters from the formats datasets come in to COCO, and from COCO to YOLO.

Each reader returns a COCO dict (images, annotations, categories; ids from 1, images in
file-name order) without copying or touching an image; ``file_name`` is relative to the
image folder given. Bad input is a ``DatasetError`` naming the file, the line and the fix.
"""

from detimb.data.convert.coco_dict import CocoBuilder
from detimb.data.convert.dota import dota_to_coco
from detimb.data.convert.voc import voc_to_coco
from detimb.data.convert.yolo import coco_to_yolo, yolo_to_coco

__all__ = ["CocoBuilder", "coco_to_yolo", "dota_to_coco", "voc_to_coco", "yolo_to_coco"]
