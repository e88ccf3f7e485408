"""Semantic segmentation evaluation: per-class Dice and IoU, region Dice, confusion matrix.

Everything derives from one confusion matrix per image (rows: truth, columns: prediction,
over labelled pixels; class 0 is background). Per image and class, ``Dice = 2|A n B| /
(|A| + |B|)`` and ``IoU = |A n B| / |A u B|``, both 1.0 when prediction and truth are both
empty (the BraTS convention); the reported value is the mean over images. ``*_global``
values pool the pixels of all images first (one confusion matrix for the split). Where
most images lack a class (a long tail), the per-image mean rewards predicting nothing
(both empty = 1) and the pooled value does not, so ``mDice_global`` is the default
metric for choosing the best checkpoint. A region is a group of classes scored as one
foreground (BraTS whole tumour, core, ...).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from detimb.data.label_map import LabelMap
from detimb import distributed
from detimb.evaluation.coco_eval import frequency_group
from detimb.utils import atomic_write, atomic_write_json

CLASS_KEYS = ("dice", "iou", "dice_global", "iou_global")


def confusion(pred: np.ndarray, truth: np.ndarray, num_classes: int, ignore_index: int) -> np.ndarray:
    """(C, C) int64 counts of (truth, prediction) over pixels whose truth is not ignored."""
    valid = truth != ignore_index
    index = truth[valid].astype(np.int64) * num_classes + pred[valid].astype(np.int64)
    return np.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


@torch.no_grad()
def predict_confusions(model: nn.Module, loader: DataLoader, device: torch.device, num_classes: int,
                       ignore_index: int, progress: bool = True) -> dict[int, np.ndarray]:
    """One confusion matrix per image id of ``loader``, gathered from every rank (in float32,
    as ``predict``)."""
    was_training = model.training
    model.eval()
    out: dict[int, np.ndarray] = {}
    for images, targets in tqdm(loader, desc="eval", leave=False, disable=not (progress and distributed.is_main())):
        outputs = model([im.to(device, non_blocking=True) for im in images])
        for output, target in zip(outputs, targets):
            pred = output["sem_seg"].argmax(0).cpu().numpy()
            out[int(target["image_id"])] = confusion(pred, target["mask"].numpy(), num_classes, ignore_index)
    model.train(was_training)
    merged: dict[int, np.ndarray] = {}
    for part in distributed.all_gather_objects(out):
        merged.update(part)
    return merged


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, 1.0 where both are 0 (both empty)."""
    return np.where(den > 0, num / np.maximum(den, 1), 1.0)


def region_dice(cm: np.ndarray, members: list[int]) -> float:
    """Dice of the union of ``members`` (labels) as one foreground, from one confusion matrix."""
    m = np.asarray(members, dtype=np.int64)
    tp, truth, pred = cm[np.ix_(m, m)].sum(), cm[m].sum(), cm[:, m].sum()
    return float(_ratio(np.array(2.0 * tp), np.array(float(truth + pred))))


def segmentation_report(confusions: dict[int, np.ndarray], label_map: LabelMap,
                        train_freq: dict[int, dict[str, int]] | None = None,
                        thresholds: tuple[int, int] = (10, 100),
                        regions: dict[str, list[int]] | None = None) -> dict[str, Any]:
    """Per-class and summary metrics from per-image confusion matrices (labels in ``regions``)."""
    names = ["background", *label_map.names]
    c = len(names)
    stack = np.stack([confusions[k] for k in sorted(confusions)]) if confusions else np.zeros((0, c, c), np.int64)
    tp = np.diagonal(stack, axis1=1, axis2=2).astype(np.float64)  # (I, C)
    truth, pred = stack.sum(2).astype(np.float64), stack.sum(1).astype(np.float64)
    dice_img, iou_img = _ratio(2 * tp, truth + pred), _ratio(tp, truth + pred - tp)
    total = stack.sum(0)
    tp_all, truth_all, pred_all = np.diagonal(total).astype(np.float64), total.sum(1), total.sum(0)
    dice_all, iou_all = _ratio(2 * tp_all, truth_all + pred_all), _ratio(tp_all, truth_all + pred_all - tp_all)
    train_freq = train_freq or {}
    per_class = []
    for k, name in enumerate(names):
        coco_id = label_map.coco_ids[k - 1] if k else None
        entry: dict[str, Any] = {
            "label": k, "category_id": coco_id, "name": name,
            "val_images": int((truth[:, k] > 0).sum()), "val_pixels": int(truth_all[k]),
            "dice": float(dice_img[:, k].mean()) if len(stack) else None,
            "iou": float(iou_img[:, k].mean()) if len(stack) else None,
            "dice_global": float(dice_all[k]), "iou_global": float(iou_all[k]),
        }
        if coco_id is not None and coco_id in train_freq:
            entry["train_images"] = train_freq[coco_id]["images"]
            entry["group"] = frequency_group(entry["train_images"], thresholds)
        per_class.append(entry)
    fg = [e for e in per_class if e["label"] > 0 and e["dice"] is not None]
    summary: dict[str, float | None] = {
        "mDice": _mean([e["dice"] for e in fg]), "mIoU": _mean([e["iou"] for e in fg]),
        "mDice_global": _mean([e["dice_global"] for e in fg]), "mIoU_global": _mean([e["iou_global"] for e in fg]),
    }
    for group in ("rare", "common", "frequent"):
        members = [e for e in fg if e.get("group") == group]
        summary[f"Dice{group[0]}"] = _mean([e["dice"] for e in members])
        summary[f"Dice{group[0]}_global"] = _mean([e["dice_global"] for e in members])
    region_scores = {name: _mean([region_dice(cm, members) for cm in stack]) for name, members in
                     (regions or {}).items()}
    summary.update({f"region_dice/{name}": v for name, v in region_scores.items()})
    return {"task": "semantic", "summary": summary, "per_class": per_class, "regions": region_scores,
            "class_names": names, "confusion": total.tolist(), "num_images": len(stack),
            "frequency_thresholds": list(thresholds)}


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def format_segmentation_table(report: dict[str, Any]) -> str:
    head = f"{'class':<16}{'group':>9}{'val img':>8}" + "".join(f"{k:>12}" for k in CLASS_KEYS)
    lines = ["[semantic] per-class Dice / IoU (per-image mean; both empty = 1)", head, "-" * len(head)]
    for e in report["per_class"]:
        lines.append(f"{e['name'][:15]:<16}{e.get('group', '-'):>9}{e['val_images']:>8}"
                     + "".join(f"{e[k]:>12.3f}" if e[k] is not None else f"{'-':>12}" for k in CLASS_KEYS))
    lines.append("-" * len(head))
    lines.append("  ".join(f"{k} {v:.3f}" for k, v in report["summary"].items() if v is not None))
    return "\n".join(lines)


def write_segmentation_reports(out_dir: str | Path, report: dict[str, Any]) -> None:
    """``eval.json``, ``per_class_dice.csv/png``, ``confusion_matrix.csv``,
    ``confusion_matrix_normalized.csv`` and ``confusion_matrix.png``."""
    out_dir = Path(out_dir)
    atomic_write_json(out_dir / "eval.json", {"semantic": report}, indent=2)
    names = report["class_names"]
    cm = np.asarray(report["confusion"], dtype=np.int64)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)

    def table(rows: list[list[Any]]) -> Any:
        def write(tmp: str) -> None:
            with open(tmp, "w", newline="") as f:
                csv.writer(f).writerows(rows)
        return write

    keys = ["label", "category_id", "name", "group", "train_images", "val_images", "val_pixels", *CLASS_KEYS]
    atomic_write(out_dir / "per_class_dice.csv",
                 table([keys] + [[e.get(k, "") for k in keys] for e in report["per_class"]]))
    for name, matrix, fmt in (("confusion_matrix.csv", cm, "{:d}"),
                              ("confusion_matrix_normalized.csv", norm, "{:.4f}")):
        rows = [["truth \\ prediction", *names]] + [[n, *(fmt.format(v) for v in row)] for n, row in zip(names, matrix)]
        atomic_write(out_dir / name, table(rows))
    atomic_write(out_dir / "confusion_matrix.png", lambda tmp: _plot_confusion(names, cm, norm, tmp))
    atomic_write(out_dir / "per_class_dice.png", lambda tmp: _plot_dice(report, tmp))


def _plot_confusion(names: list[str], cm: np.ndarray, norm: np.ndarray, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(names), 0.8 + 0.6 * len(names)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{norm[i, j]:.2f}\n{cm[i, j]}", ha="center", va="center", fontsize=6,
                    color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("prediction")
    ax.set_ylabel("truth")
    ax.set_title("pixel confusion (row-normalised; raw counts below)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


def _plot_dice(report: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [e for e in report["per_class"] if e["label"] > 0]
    rows.sort(key=lambda e: e.get("train_images") or 0)
    colours = {"rare": "#d62728", "common": "#ff7f0e", "frequent": "#1f77b4"}
    fig, ax = plt.subplots(figsize=(6, 0.45 * len(rows) + 1.8))
    values = [e["dice"] or 0.0 for e in rows]
    ax.barh([e["name"] for e in rows], values, color=[colours.get(e.get("group", ""), "#7f7f7f") for e in rows])
    for y, v in enumerate(values):
        ax.text(v + 0.01, y, f"{v:.3f}", va="center", fontsize=8)
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("Dice (per-image mean)")
    ax.set_title(f"mDice {report['summary']['mDice'] or 0:.3f} (rare first)", fontsize=9)
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
