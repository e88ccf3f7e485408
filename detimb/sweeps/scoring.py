"""COCO box AP for any multiset of validation images, from one matching pass per run.

pycocotools' ``COCOeval.evaluate`` matches each image's detections to its ground truth
once (per class, IoU threshold 0.50:0.05:0.95, area 'all', the highest-scoring 100 per
image). ``RunMatches`` keeps those matches; ``ap_table`` then recomputes each class's AP
for image weights (a bootstrap draw counts an image as often as it was drawn) the way
``COCOeval.accumulate`` does: detections sorted by score (stable, in image order),
cumulative true and false positives, each detection and ground truth counted with its
image's weight, 101 recall thresholds on the precision envelope. Weights of 1 give
pycocotools' per-class AP, and weights of 0 give pycocotools' AP on the other images
alone (both tested against pycocotools). A weight of 2 counts an image's detections as
one step of 2, where two copies of the image would make two steps of 1: the bootstrap's
AP of a draw differs from that of a dataset with copied images only at those steps.

AP-fixed (Dave et al. 2021, ``evaluation/ap_fixed.py``) is the same computation on matches
with no per-image cap (``match_run(..., max_dets=None)``) and ``ap_table(..., per_class=k)``:
each class keeps its ``k`` highest-scoring detections among the images a row weighs
(a detection counted once however often its image was drawn), as the released script keeps
the top ``k`` of the whole evaluated set.
"""

from __future__ import annotations

import contextlib
import io
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
MAX_DETS = 100


@dataclass(frozen=True)
class ClassMatches:
    """One class's detections over the validation set, in COCO's score order (stable in
    image order). image: (D,) index into ``RunMatches.image_ids``; true_positive and
    ignored: (T, D) per IoU threshold; positives: (I,) non-ignored ground truths per image."""

    image: np.ndarray
    true_positive: np.ndarray
    ignored: np.ndarray
    positives: np.ndarray


@dataclass(frozen=True)
class RunMatches:
    """A run's detections matched to the validation ground truth, class by class."""

    image_ids: tuple[int, ...]
    category_ids: tuple[int, ...]
    classes: tuple[ClassMatches, ...]


def _evaluator(gt: COCO, results: list[dict[str, Any]], max_dets: int) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes([dict(r) for r in results]) if results else COCO()
        if not results:
            dt.dataset = {"images": gt.dataset["images"], "categories": gt.dataset["categories"], "annotations": []}
            dt.createIndex()
        ev = COCOeval(gt, dt, "bbox")
        ev.params.areaRng, ev.params.areaRngLbl = [[0.0, 1e10]], ["all"]
        ev.params.maxDets = [max_dets]
        ev.evaluate()
    return ev


def most_per_image_and_class(results: list[dict[str, Any]]) -> int:
    """The most detections any image has of one class (pycocotools' cap applies per pair)."""
    return max(Counter((r["image_id"], r["category_id"]) for r in results).values(), default=0)


def match_run(gt: COCO, results: list[dict[str, Any]], max_dets: int | None = MAX_DETS) -> RunMatches:
    """Match ``results`` (COCO bbox records) to ``gt`` once, keeping each image's ``max_dets``
    highest-scoring detections of a class (None: all of them, for AP-fixed)."""
    if max_dets is None:
        max_dets = max(1, most_per_image_and_class(results))
    ev = _evaluator(gt, results, max_dets)
    image_ids, category_ids = list(ev.params.imgIds), list(ev.params.catIds)
    thresholds = len(ev.params.iouThrs)
    classes = []
    for k in range(len(category_ids)):
        per_image = ev.evalImgs[k * len(image_ids):(k + 1) * len(image_ids)]
        scores, image, tp, ignored = [], [], [], []
        positives = np.zeros(len(image_ids), dtype=np.int64)
        for i, e in enumerate(per_image):
            if e is None:
                continue
            positives[i] = int(np.count_nonzero(e["gtIgnore"] == 0))
            n = len(e["dtScores"][:max_dets])
            scores.append(np.asarray(e["dtScores"][:max_dets], dtype=np.float64))
            image.append(np.full(n, i, dtype=np.int64))
            tp.append(np.asarray(e["dtMatches"])[:, :max_dets] > 0)
            ignored.append(np.asarray(e["dtIgnore"], dtype=bool)[:, :max_dets])
        if scores:
            s = np.concatenate(scores)
            order = np.argsort(-s, kind="mergesort")  # COCOeval.accumulate's order
            classes.append(ClassMatches(np.concatenate(image)[order], np.concatenate(tp, axis=1)[:, order],
                                        np.concatenate(ignored, axis=1)[:, order], positives))
        else:
            empty = np.zeros((thresholds, 0), dtype=bool)
            classes.append(ClassMatches(np.zeros(0, dtype=np.int64), empty, empty, positives))
    return RunMatches(tuple(image_ids), tuple(category_ids), tuple(classes))


def _detection_weights(matches: ClassMatches, weights: np.ndarray, per_class: int | None) -> np.ndarray:
    """(B, D) each detection's weight: its image's, and 0 past the row's ``per_class`` highest
    scoring detections (counted in score order over the images the row weighs)."""
    w = weights[:, matches.image]
    if per_class is not None:
        present = w > 0
        w = np.where(present & (np.cumsum(present, axis=1) <= per_class), w, 0.0)
    return w


def _thresholds_reached(recall: np.ndarray) -> np.ndarray:
    """(B, N) how many of the 101 recall thresholds each recall (B, N), nondecreasing along
    a row, reaches. COCO takes, for threshold r, the precision at the first detection with
    recall >= r (``searchsorted(recall, r, side="left")``); that detection is the first whose
    count exceeds r's index, so the counts' steps say which thresholds each detection
    answers, for every row at once and with COCO's float comparisons."""
    return np.searchsorted(RECALL_THRESHOLDS, recall.ravel(), side="right").reshape(recall.shape)


def _class_ap(matches: ClassMatches, weights: np.ndarray, per_class: int | None) -> np.ndarray:
    """(B,) the class's AP for each row of image weights (B, I); NaN where the weighted
    images hold none of its ground truth."""
    positives = weights @ matches.positives
    out = np.full(len(weights), np.nan)
    rows = np.flatnonzero(positives > 0)
    if rows.size == 0:
        return out
    weights, positives = weights[rows].astype(np.float64), positives[rows].astype(np.float64)
    detection_weights = _detection_weights(matches, weights, per_class)
    # A detection no row weighs repeats its predecessor's counts (or, first, scores 0 at
    # recall 0): it changes no row's AP, and a half's draws weigh none of the other half's.
    weighed = detection_weights.any(axis=0)
    detection_weights = detection_weights[:, weighed]
    true_positive, ignored = matches.true_positive[:, weighed], matches.ignored[:, weighed]
    total = np.zeros(len(rows))
    seen = np.cumsum(detection_weights, axis=1)  # detections counted so far; shared where none is ignored
    for t in range(len(true_positive)):
        # Only true positives raise recall, and a false positive's precision is below that of
        # the true positive before it: COCO's envelope at every recall threshold is a max over
        # true positives alone, so AP needs their cumulative counts and nothing else.
        counted = seen if not ignored[t].any() else np.cumsum(detection_weights * ~ignored[t], axis=1)
        hits = np.flatnonzero(true_positive[t] & ~ignored[t])
        if hits.size == 0:
            continue  # no true positive: precision 0 at every recall
        tps = np.cumsum(detection_weights[:, hits], axis=1)  # integer weights: exact sums
        precision = np.maximum.accumulate((tps / (counted[:, hits] + np.spacing(1)))[:, ::-1], axis=1)[:, ::-1]
        answered = np.diff(_thresholds_reached(tps / positives[:, None]), axis=1, prepend=0)
        total += (answered * precision).sum(axis=1) / len(RECALL_THRESHOLDS)  # unreached thresholds score 0
    out[rows] = total / len(true_positive)
    return out


def ap_table(run: RunMatches, weights: np.ndarray, per_class: int | None = None) -> np.ndarray:
    """(B, K) per-class AP for each row of image weights (B, I), images in
    ``run.image_ids`` order; NaN where a class has no ground truth under those weights.
    ``per_class``: keep each class's top ``per_class`` detections per row (AP-fixed's k)."""
    if per_class is not None and per_class < 1:
        raise ValueError(f"per_class keeps >= 1 detections, got {per_class}")
    weights = np.atleast_2d(np.asarray(weights))
    return np.stack([_class_ap(m, weights, per_class) for m in run.classes], axis=1) if run.classes else \
        np.zeros((len(weights), 0))
