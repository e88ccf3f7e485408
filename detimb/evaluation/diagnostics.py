"""Why a class scores low: per-class precision-recall curves and a detection confusion
matrix with background, as PNG and CSV.

PR curves are COCOeval's own accumulated precision at its 101 recall points
(``eval['precision'][t, :, k, area=all, maxDets=last]``) at IoU 0.5 and 0.75.

The confusion matrix (as Ultralytics and mmdetection's analysis tool draw it) counts, per
image, detections scoring at least ``score_threshold`` in descending score, each matched
to the unmatched non-crowd ground truth of *any* class with the highest IoU >= ``iou``:
a match adds to (its ground-truth class, its predicted class), an unmatched detection to
(background, predicted class) — a false positive, duplicates included — and every
ground truth left unmatched to (its class, background) — a miss. Rows are ground truth,
columns predictions, the last of each being background; the row-normalised matrix gives
each class's share of outcomes.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from detimb.utils import atomic_write


def pr_curves(evaluator: Any, cat_ids: list[int]) -> dict[str, Any]:
    """{'recall': [101], 'precision': {iou: {category id: [101]}}} for IoU 0.5 and 0.75
    (precision -1 where the class has no ground truth)."""
    params = evaluator.params
    precision = evaluator.eval["precision"]
    out: dict[str, Any] = {"recall": [float(r) for r in params.recThrs], "precision": {}}
    for iou in (0.5, 0.75):
        t = int(np.argmin(np.abs(np.asarray(params.iouThrs) - iou)))
        out["precision"][str(iou)] = {int(c): [float(v) for v in precision[t, :, k, 0, -1]]
                                      for k, c in enumerate(params.catIds) if c in cat_ids}
    return out


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xywh box with (N, 4) xywh boxes."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[0] + box[2], boxes[:, 0] + boxes[:, 2])
    y1 = np.minimum(box[1] + box[3], boxes[:, 1] + boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    union = box[2] * box[3] + boxes[:, 2] * boxes[:, 3] - inter
    return inter / np.maximum(union, 1e-12)


def confusion_matrix(gt: dict[str, Any], results: list[dict[str, Any]], cat_ids: list[int], iou: float = 0.5,
                     score_threshold: float = 0.25) -> np.ndarray:
    """(K + 1, K + 1) counts, rows ground truth, columns predictions, index K background
    (see the module docstring); ``cat_ids`` give the order of the K classes."""
    index = {c: i for i, c in enumerate(cat_ids)}
    k = len(cat_ids)
    cm = np.zeros((k + 1, k + 1), dtype=np.int64)
    gts: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for a in gt["annotations"]:
        if not a.get("iscrowd", 0) and a["category_id"] in index:
            gts[a["image_id"]].append(a)
    dets: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for d in results:
        if d["score"] >= score_threshold and d["category_id"] in index:
            dets[d["image_id"]].append(d)
    for image_id in set(gts) | set(dets):
        truth = gts.get(image_id, [])
        boxes = np.array([a["bbox"] for a in truth], dtype=np.float64).reshape(-1, 4)
        used = np.zeros(len(truth), dtype=bool)
        for d in sorted(dets.get(image_id, []), key=lambda r: -r["score"]):
            col = index[d["category_id"]]
            if len(truth):
                overlaps = np.where(used, -1.0, _iou(np.asarray(d["bbox"], dtype=np.float64), boxes))
                best = int(np.argmax(overlaps))
                if overlaps[best] >= iou:
                    used[best] = True
                    cm[index[truth[best]["category_id"]], col] += 1
                    continue
            cm[k, col] += 1
        for a, hit in zip(truth, used):
            if not hit:
                cm[index[a["category_id"]], k] += 1
    return cm


def row_normalised(cm: np.ndarray) -> np.ndarray:
    rows = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, rows, out=np.zeros(cm.shape, dtype=np.float64), where=rows > 0)


def write_confusion(out_dir: Path, cm: np.ndarray, names: list[str], iou: float, score_threshold: float) -> None:
    labels = [*names, "background"]
    for suffix, matrix in (("", cm), ("_normalized", row_normalised(cm))):
        def write_csv(tmp: str, matrix: np.ndarray = matrix, counts: bool = not suffix) -> None:
            with open(tmp, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["ground_truth \\ predicted", *labels])
                for name, row in zip(labels, matrix):
                    writer.writerow([name, *(int(v) if counts else round(float(v), 6) for v in row)])

        atomic_write(out_dir / f"confusion_matrix{suffix}.csv", write_csv)
    atomic_write(out_dir / "confusion_matrix.png", lambda tmp: _plot_confusion(cm, labels, iou, score_threshold, tmp))


def _plot_confusion(cm: np.ndarray, labels: list[str], iou: float, score_threshold: float, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = 2.5 + 0.45 * len(labels)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size, size))
    for ax, matrix, title in ((axes[0], cm, "counts"), (axes[1], row_normalised(cm), "share of each true class")):
        ax.imshow(matrix, cmap="Blues")
        for (i, j), v in np.ndenumerate(matrix):
            if v:
                ax.text(j, i, f"{v:.2f}" if matrix.dtype.kind == "f" else str(v), ha="center", va="center",
                        fontsize=7)
        ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_xlabel("predicted")
        ax.set_ylabel("ground truth")
        ax.set_title(f"{title} (IoU >= {iou}, score >= {score_threshold})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)


def write_pr_curves(out_dir: Path, curves: dict[str, Any], per_class: list[dict[str, Any]],
                    stem: str = "pr_curves") -> None:
    """``<stem>.csv`` (iou, category, recall, precision) and ``<stem>.png`` (a panel per
    class, rare classes first and marked)."""
    def write_csv(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["iou", "category_id", "name", "group", "recall", "precision"])
            for e in per_class:
                for iou, by_class in curves["precision"].items():
                    for r, p in zip(curves["recall"], by_class.get(e["category_id"], [])):
                        writer.writerow([iou, e["category_id"], e["name"], e.get("group", ""), r, p])

    atomic_write(out_dir / f"{stem}.csv", write_csv)
    atomic_write(out_dir / f"{stem}.png", lambda tmp: _plot_pr(curves, per_class, tmp))


def _plot_pr(curves: dict[str, Any], per_class: list[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, len(per_class))
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for ax, e in zip(axes.flat, per_class):
        for iou, style in (("0.5", "-"), ("0.75", "--")):
            p = np.asarray(curves["precision"][iou].get(e["category_id"], []), dtype=float)
            if p.size:
                ax.plot(curves["recall"], np.where(p < 0, np.nan, p), style, label=f"IoU {iou}")
        rare = e.get("group") == "rare"
        ax.set_title(f"{e['name']}{' (rare)' if rare else ''}", fontsize=9, color="#d62728" if rare else "black")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("recall", fontsize=8)
        ax.set_ylabel("precision", fontsize=8)
        ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
