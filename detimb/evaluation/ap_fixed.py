"""AP-fixed (Dave, Dollár, Ramanan, Kirillov, Girshick, "Evaluating Large-Vocabulary Object
Detectors: The Devil is in the Details", 2021; ``achalddave/large-vocab-devil``
``scripts/evaluate_ap_fixed.py``).

AP with a per-image cap (COCO's 100, LVIS's 300) can be raised by re-ranking scores across
classes without detecting anything new. AP-fixed removes the per-image cap and caps the
detections per *class* over the whole dataset instead: each class keeps its ``k``
highest-scoring detections (``k`` = 10,000, the released default), in the released script's
order (a stable sort by descending score, so ties keep their file order; a helper elsewhere
in that repository keeps the first ``k`` in file order, which is a bug and not the rule).
The kept detections are scored by the same evaluator as AP (COCO's rules, or LVIS's for
LVIS-style files) with no per-image limit. Reported beside AP, with APr/APc/APf, and the
number of classes with fewer than ``k`` detections: for those, AP-fixed is lower than a
model that output ``k`` per class would get (the release warns the same).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from pycocotools.coco import COCO

from detimb.data.label_map import LabelMap
from detimb.evaluation.coco_eval import evaluate_coco

DETS_PER_CLASS = 10_000


def top_detections_per_class(results: list[dict[str, Any]], k: int) -> tuple[list[dict[str, Any]], int]:
    """Each class's ``k`` highest-scoring detections over the dataset, and how many classes
    that have detections have fewer than ``k``."""
    if k < 1:
        raise ValueError(f"AP-fixed keeps k >= 1 detections per class, got {k}")
    by_class: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for record in results:
        by_class[record["category_id"]].append(record)
    kept: list[dict[str, Any]] = []
    for records in by_class.values():
        kept.extend(sorted(records, key=lambda r: r["score"], reverse=True)[:k])
    return kept, sum(len(records) < k for records in by_class.values())


def ap_fixed(coco_gt: COCO, results: list[dict[str, Any]], iou_type: str, label_map: LabelMap,
             train_freq: dict[int, dict[str, int]] | None = None, thresholds: tuple[int, int] = (10, 100),
             backend: str = "pycocotools", k: int = DETS_PER_CLASS) -> dict[str, Any]:
    """AP-fixed of ``results``: ``mAP`` (AP@[.5:.95] over classes), ``APr``/``APc``/``APf``,
    ``per_class`` (category id -> AP), ``dets_per_class`` (k) and ``classes_under_k``."""
    kept, short = top_detections_per_class(results, k)
    per_image = max(Counter(r["image_id"] for r in kept).values(), default=1)  # no per-image cap
    report = evaluate_coco(coco_gt, kept, iou_type, label_map, train_freq, thresholds, per_image, backend)
    # the mean of the per-class APs: pycocotools' stats[0] reads maxDets 100 only, -1 for any other cap
    mean = report["mAP_macro"] if report["mAP_macro"] is not None else 0.0
    return {"mAP": mean, **report["groups"], "dets_per_class": k, "classes_under_k": short,
            "per_class": {e["category_id"]: e["AP"] for e in report["per_class"]}}
