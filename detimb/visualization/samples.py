"""Validation images drawn as ground truth beside predictions, the rarest classes first."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from detimb.data.label_map import LabelMap
from detimb.data.pixels import display_rgb
from detimb.visualization.drawing import draw_detections, side_by_side, titled
from detimb.visualization.pictures import save_picture

SAMPLE_IMAGES, SAMPLE_SCORE = 6, 0.3  # validation pictures after training, and the score they draw from


def write_detection_samples(dataset: Any, results: list[dict[str, Any]], label_map: LabelMap,
                            train_freq: dict[int, dict[str, int]], out_dir: Path, count: int) -> list[Path]:
    """``count`` validation images ranked by the rarest training class they contain, each
    drawn as ground truth | predictions (score >= SAMPLE_SCORE) into ``out_dir``."""
    names = dict(zip(label_map.coco_ids, label_map.names))
    rarity = {cid: train_freq.get(cid, {}).get("instances", 0) for cid in label_map.coco_ids}
    by_id = {im["id"]: im for im in dataset.images}  # the evaluated images (a subset with evaluation.max_images)
    gt = defaultdict(list)
    for a in dataset.records.data["annotations"]:
        if not a.get("iscrowd", 0) and a["category_id"] in names and a["image_id"] in by_id:
            gt[a["image_id"]].append(a)
    ranked = sorted((min(rarity[a["category_id"]] for a in anns), image_id) for image_id, anns in gt.items())
    preds = defaultdict(list)
    for r in results:
        if r["score"] >= SAMPLE_SCORE:
            preds[r["image_id"]].append(r)
    written = []
    for _, image_id in ranked[:count]:
        info = by_id[image_id]
        pixels = display_rgb(dataset.load_image(info))  # multi-band inputs drawn by their first three bands

        def xyxy(records: list[dict[str, Any]]) -> np.ndarray:
            return np.array([[x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in records)],
                            dtype=np.float32).reshape(-1, 4)

        truth, mine = gt[image_id], preds[image_id]
        left = draw_detections(pixels, xyxy(truth), np.array([a["category_id"] for a in truth]),
                               [names[a["category_id"]] for a in truth])
        right = draw_detections(pixels, xyxy(mine), np.array([r["category_id"] for r in mine]),
                                [names[r["category_id"]] for r in mine], np.array([r["score"] for r in mine]))
        path = out_dir / f"{Path(info['file_name']).stem}.png"
        save_picture(path, side_by_side(titled(left, f"ground truth ({len(truth)})"),
                                        titled(right, f"scores >= {SAMPLE_SCORE} ({len(mine)})")))
        written.append(path)
    return written
