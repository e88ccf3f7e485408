"""COCO instance masks rasterised into one class map per image (semantic segmentation).

Rule, in this order: every pixel starts as background (0); crowd annotations mark their
pixels ``ignore_index``; then the non-crowd annotations are painted largest area first,
so where instances overlap the smaller one stays on top (a small object lying on a large
one keeps its pixels). ``overlap='ignore'`` instead marks pixels claimed by instances of
different classes as ``ignore_index``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from detimb.data.instance_masks import polygons_to_mask
from detimb.data.label_map import LabelMap

OVERLAP_RULES = ("smaller_on_top", "ignore")


def class_map(annotations: list[dict[str, Any]], height: int, width: int, label_map: LabelMap,
              ignore_index: int = 255, overlap: str = "smaller_on_top") -> np.ndarray:
    """(H, W) int64 map: 0 background, 1..K the label of the class, ``ignore_index`` unlabelled."""
    if overlap not in OVERLAP_RULES:
        raise ValueError(f"overlap must be one of {OVERLAP_RULES}, got {overlap!r}")
    out = np.zeros((height, width), dtype=np.int64)
    for a in annotations:
        if a.get("iscrowd", 0) and "segmentation" in a:
            out[polygons_to_mask(a["segmentation"], height, width) > 0] = ignore_index
    painted = np.zeros((height, width), dtype=np.int64)  # the label painted, 0 where none yet
    clash = np.zeros((height, width), dtype=bool)
    instances = [a for a in annotations if not a.get("iscrowd", 0)]
    for a in sorted(instances, key=lambda a: -float(a.get("area", a["bbox"][2] * a["bbox"][3]))):
        label = label_map.label(a["category_id"])
        if "segmentation" in a and a["segmentation"]:
            region = polygons_to_mask(a["segmentation"], height, width) > 0
        else:  # a box without a mask: its rectangle
            x, y, w, h = a["bbox"]
            region = np.zeros((height, width), dtype=bool)
            region[int(round(y)):int(round(y + h)), int(round(x)):int(round(x + w))] = True
        clash |= region & (painted > 0) & (painted != label)
        painted[region] = label
    out = np.where(painted > 0, painted, out)  # crowd pixels no instance covers stay ignored
    if overlap == "ignore":
        out[clash] = ignore_index
    return out

