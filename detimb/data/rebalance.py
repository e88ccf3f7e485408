"""Under- and oversampling of a COCO dataset into a new one (the input is never modified).

Undersampling drops a seeded, exact fraction of the images without annotations and of
the images that hold only majority classes (by default the head: the most frequent
classes that together hold half the instances). Oversampling duplicates images until
every class reaches its target (``targets``) or ``max count / max_ratio``: each step
takes the class furthest below its target (relatively) and duplicates, among the images
containing it, the one that adds the fewest instances of classes already at target, so
the head grows as little as the data allows. When the head class is in every image with
a tail class, targets may be unreachable; the result reports what was reached.
Duplicates may be augmented (albumentations, seeded): their pixels are then new images,
and their annotations keep boxes only (polygons are dropped, area = box area).
"""

from __future__ import annotations

import copy
import math
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from detimb.data.statistics import dataset_stats
from detimb.data.transforms import apply_albumentations, build_albumentations
from detimb.errors import DatasetError, InputError
from detimb.utils import inside


def _counts(coco: dict[str, Any]) -> Counter:
    return Counter(a["category_id"] for a in coco["annotations"] if not a.get("iscrowd", 0))


def _by_image(coco: dict[str, Any]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {img["id"]: [] for img in coco["images"]}
    for a in coco["annotations"]:
        out[a["image_id"]].append(a)
    return out


def undersample(coco: dict[str, Any], rng: np.random.Generator, drop_empty: float = 0.0,
                drop_majority_only: float = 0.0, majority: set[int] | None = None) -> dict[str, Any]:
    """Drop ``round(fraction * n)`` images, drawn at random, of the empty and the majority-only ones."""
    for name, frac in (("drop_empty", drop_empty), ("drop_majority_only", drop_majority_only)):
        if not 0.0 <= frac <= 1.0:
            raise InputError(f"{name} (--{name.replace('_', '-')}) must be in [0, 1], got {frac}")
    if majority is None:
        names = set(dataset_stats(coco)["head_classes"])
        majority = {c["id"] for c in coco["categories"] if c["name"] in names}
    anns = _by_image(coco)
    empty = [i for i, a in anns.items() if not a]
    major = [i for i, a in anns.items() if a and {x["category_id"] for x in a} <= majority]
    dropped: set[int] = set()
    for pool, frac in ((empty, drop_empty), (major, drop_majority_only)):
        k = int(round(frac * len(pool)))
        dropped |= set(rng.choice(pool, size=k, replace=False).tolist()) if k else set()
    out = copy.deepcopy(coco)
    out["images"] = [im for im in out["images"] if im["id"] not in dropped]
    out["annotations"] = [a for a in out["annotations"] if a["image_id"] not in dropped]
    return out


def oversample_plan(coco: dict[str, Any], rng: np.random.Generator, targets: dict[int, int] | None = None,
                    max_ratio: float | None = None, max_duplicates: int | None = None) -> list[int]:
    """Image ids to duplicate (an id may repeat), greedily, as the module describes."""
    counts = _counts(coco)
    if targets is None:
        if max_ratio is None or not max_ratio >= 1:  # NaN too
            raise InputError(f"give targets or a max_ratio (--max-ratio) >= 1, got {max_ratio}")
        top = max(counts.values(), default=0)
        targets = {c: math.ceil(top / max_ratio) for c in counts}
    want = {c: t for c, t in targets.items() if t > counts.get(c, 0) and counts.get(c, 0) > 0}
    per_image = {i: Counter(a["category_id"] for a in anns if not a.get("iscrowd", 0))
                 for i, anns in _by_image(coco).items()}
    holders = {c: [i for i, cnt in per_image.items() if cnt.get(c)] for c in want}
    limit = max_duplicates if max_duplicates is not None else 10 * max(1, len(coco["images"]))
    plan: list[int] = []
    while len(plan) < limit:
        short = {c: (t - counts[c]) / t for c, t in want.items() if counts[c] < t}
        if not short:
            break
        cls = max(sorted(short), key=lambda c: short[c])
        done = {c for c in counts if counts[c] >= targets.get(c, 0)}
        overshoot = [sum(n for c, n in per_image[i].items() if c in done) for i in holders[cls]]
        best = [i for i, o in zip(holders[cls], overshoot) if o == min(overshoot)]
        pick = int(rng.choice(best))
        plan.append(pick)
        counts.update(per_image[pick])
    return plan


def apply_plan(coco: dict[str, Any], plan: list[int], img_dir: str | Path | None = None,
               out_img_dir: str | Path | None = None, transforms: list[dict[str, Any]] | None = None,
               seed: int = 0) -> dict[str, Any]:
    """A new COCO dict with the planned duplicates added. Without ``transforms`` a duplicate
    is a new record of the same file. With them, ``out_img_dir`` receives a hard link (or
    copy) of every original and each augmented duplicate, and the result's file names are
    relative to it."""
    out = copy.deepcopy(coco)
    pipeline = build_albumentations(list(transforms or []), where="--transforms")
    if pipeline is not None:
        if img_dir is None or out_img_dir is None:
            raise DatasetError("augmented duplicates need --images and --out-images")
        out_img_dir = Path(out_img_dir)
        out_img_dir.mkdir(parents=True, exist_ok=True)
        for im in coco["images"]:
            _link(inside(img_dir, im["file_name"], "--images"), inside(out_img_dir, im["file_name"], "--out-images"))
    images = {im["id"]: im for im in coco["images"]}
    anns = _by_image(coco)
    next_image = max(images, default=0) + 1
    next_ann = max((a["id"] for a in coco["annotations"]), default=0) + 1
    for k, image_id in enumerate(plan):
        record = {**images[image_id], "id": next_image, "duplicate_of": image_id}
        src = [a for a in anns[image_id]]
        if pipeline is None:
            new = [{**copy.deepcopy(a), "id": next_ann + j, "image_id": next_image} for j, a in enumerate(src)]
        else:
            pixels = cv2.imread(str(Path(img_dir) / images[image_id]["file_name"]), cv2.IMREAD_COLOR)
            if pixels is None:
                raise DatasetError(f"{img_dir}: image {images[image_id]['file_name']} cannot be read")
            boxes = np.array([[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                              for a in src], dtype=np.float32).reshape(-1, 4)
            pixels, boxes, kept, _ = apply_albumentations(pipeline, pixels, boxes, None, seed * 1_000_003 + k)
            name = f"rebalanced/{k:06d}_{Path(images[image_id]['file_name']).name}"
            inside(out_img_dir, name, "--out-images").parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(out_img_dir / name), pixels):
                raise DatasetError(f"cannot write {out_img_dir / name}")
            record.update(file_name=name, height=int(pixels.shape[0]), width=int(pixels.shape[1]))
            new = []
            for j, (box, idx) in enumerate(zip(boxes.tolist(), kept.tolist())):
                w, h = box[2] - box[0], box[3] - box[1]
                base = {k2: v for k2, v in src[idx].items() if k2 not in ("segmentation", "area", "bbox")}
                new.append({**base, "id": next_ann + j, "image_id": next_image,
                            "bbox": [box[0], box[1], w, h], "area": w * h})
        out["images"].append(record)
        out["annotations"] += new
        next_image += 1
        next_ann += len(new)
    return out


def _link(src: Path, dst: Path) -> None:
    if dst.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def class_counts_by_name(coco: dict[str, Any]) -> dict[str, int]:
    names = {c["id"]: c["name"] for c in coco["categories"]}
    counts = _counts(coco)
    return {names[c]: counts.get(c, 0) for c in names}
