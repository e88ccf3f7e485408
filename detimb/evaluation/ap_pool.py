"""AP-pool (Dave, Dollár, Ramanan, Kirillov, Girshick, "Evaluating Large-Vocabulary Object
Detectors: The Devil is in the Details", 2021; ``achalddave/large-vocab-devil`` @87dcb5e,
``scripts/evaluate_ap_pooled.py`` and ``lvdevil/eval_wrapper.py`` ``LVISPooledEval``).

AP-fixed averages per-class APs, so each class ranks only its own detections: scores need
not be comparable across classes. AP-pool ranks the detections of all classes of a pool
(all, rare, common, frequent) together, so it rewards scores calibrated across classes.
Detections are matched to ground truth per class exactly as for AP; only the precision and
recall are accumulated over the pool: its detections sorted by score (a stable sort, the
released ``mergesort``, images outer and classes inner, as the release concatenates them),
true and false positives counted over all of them, recall over all the pool's ground truth,
and precision interpolated at COCO's 101 recall points and averaged over the IoU
thresholds. As the release: the same top-``k``-per-class cap as AP-fixed, no per-image cap,
the "all" area range only.

LVIS-style files (images with ``neg_category_ids`` / ``not_exhaustive_category_ids``) are
matched by LVIS's federated rules, restated here over pycocotools' per-image matching: a
class's detections count only on images where it is annotated or verified absent, and an
unmatched detection of a class the image does not label exhaustively is ignored rather
than a false positive (``lvis`` ``LVISEval``'s rules, which the release's evaluation inherits).
"""

from __future__ import annotations

import contextlib
import io
from collections import Counter, defaultdict
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detimb.data.coco_validate import is_lvis_style
from detimb.evaluation.ap_fixed import DETS_PER_CLASS, top_detections_per_class
from detimb.evaluation.coco_eval import class_groups

POOLS = (("mAP", None), ("APr", "rare"), ("APc", "common"), ("APf", "frequent"))


def _federated(gt: dict[str, Any], results: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], set]:
    """LVIS's rules: the detections on images where their class is annotated or verified
    absent, and the (image, class) pairs whose labels are not exhaustive."""
    known: dict[int, set[int]] = defaultdict(set)
    for a in gt["annotations"]:
        known[a["image_id"]].add(a["category_id"])
    not_exhaustive = set()
    for img in gt["images"]:
        known[img["id"]].update(img.get("neg_category_ids", []))
        not_exhaustive.update((img["id"], c) for c in img.get("not_exhaustive_category_ids", []))
    return [r for r in results if r["category_id"] in known[r["image_id"]]], not_exhaustive


def matched_images(coco_gt: COCO, results: list[dict[str, Any]], iou_type: str) -> COCOeval | None:
    """pycocotools' per-(class, image) matching of ``results``, area "all", no per-image
    cap; under LVIS's rules where the file is LVIS-style. None when no detection counts."""
    not_exhaustive: set = set()
    if is_lvis_style(coco_gt.dataset):
        results, not_exhaustive = _federated(coco_gt.dataset, results)
    if not results:
        return None
    with contextlib.redirect_stdout(io.StringIO()):  # loadRes writes ids and areas into the records: copies
        evaluator = COCOeval(coco_gt, coco_gt.loadRes([dict(r) for r in results]), iou_type)
        evaluator.params.areaRng, evaluator.params.areaRngLbl = [[0, 1e10]], ["all"]
        evaluator.params.maxDets = [max(Counter(r["image_id"] for r in results).values(), default=1)]
        evaluator.evaluate()
    cats, imgs = evaluator.params.catIds, evaluator.params.imgIds
    for k, cat in enumerate(cats):
        for i, img in enumerate(imgs):
            e = evaluator.evalImgs[k * len(imgs) + i]
            if e is not None and (img, cat) in not_exhaustive:
                e["dtIgnore"] = np.logical_or(e["dtIgnore"], e["dtMatches"] == 0)
    return evaluator


def pooled_ap(evaluator: COCOeval, members: list[int]) -> float | None:
    """AP@[.5:.95] of the classes at indices ``members`` of ``params.catIds`` pooled, as the
    release's ``accumulate`` and ``_summarize_pool``; None when the pool has no ground truth."""
    p = evaluator.params
    num_imgs = len(p.imgIds)
    entries = [evaluator.evalImgs[c * num_imgs + i] for i in range(num_imgs) for c in members]
    entries = [e for e in entries if e is not None]
    if not entries:
        return None
    num_gt = int(np.count_nonzero(np.concatenate([e["gtIgnore"] for e in entries]) == 0))
    if num_gt == 0:
        return None
    order = np.argsort(-np.concatenate([e["dtScores"] for e in entries]), kind="mergesort")
    matches = np.concatenate([e["dtMatches"] for e in entries], axis=1)[:, order]
    ignored = np.concatenate([e["dtIgnore"] for e in entries], axis=1)[:, order]
    tp_sum = np.cumsum(np.logical_and(matches, ~ignored), axis=1).astype(float)
    fp_sum = np.cumsum(np.logical_and(~matches.astype(bool), ~ignored), axis=1).astype(float)
    precision = np.zeros((len(p.iouThrs), len(p.recThrs)))
    for t, (tp, fp) in enumerate(zip(tp_sum, fp_sum)):
        recall = tp / num_gt
        pr = tp / (fp + tp + np.spacing(1))
        pr = np.maximum.accumulate(pr[::-1])[::-1]  # the highest precision at this recall or beyond
        index = np.searchsorted(recall, p.recThrs, side="left")
        valid = index < len(pr)
        precision[t, valid] = pr[index[valid]]
    return float(precision.mean())


def ap_pool(coco_gt: COCO, results: list[dict[str, Any]], iou_type: str,
            train_freq: dict[int, dict[str, int]] | None = None, thresholds: tuple[int, int] = (10, 100),
            k: int = DETS_PER_CLASS) -> dict[str, Any]:
    """AP-pool of ``results``: ``mAP`` (every class pooled), ``APr``/``APc``/``APf`` (each
    frequency group pooled; None for a group without ground truth) and ``dets_per_class``."""
    kept, _ = top_detections_per_class(results, k)
    groups = class_groups(coco_gt.dataset, train_freq or {}, thresholds)
    report: dict[str, Any] = {"dets_per_class": k}
    evaluator = matched_images(coco_gt, kept, iou_type)
    for key, group in POOLS:
        if evaluator is None:
            has_gt = any(group is None or groups.get(a["category_id"]) == group
                         for a in coco_gt.dataset["annotations"] if not a.get("iscrowd", 0))
            report[key] = 0.0 if has_gt else None
            continue
        cats = evaluator.params.catIds
        members = [i for i, c in enumerate(cats) if group is None or groups.get(c) == group]
        report[key] = pooled_ap(evaluator, members)
    return report
