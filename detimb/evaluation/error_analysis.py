"""COCO's error breakdown per class: what a class's AP loses to localisation, to confusion
with a similar class or another class, to background, and to misses.

This is the analysis of Hoiem et al. (ECCV 2012) that the COCO API's Matlab ``analyze``
draws (pycocotools has no Python version); detimb recomputes it with pycocotools' own
matching, one class at a time, at IoU 0.5 unless said (area all, 100 detections):

- C75, C50: AP at IoU 0.75 and 0.5;
- Loc: AP at IoU 0.1 (localisation errors forgiven);
- Sim: as Loc, with detections on ground truth of another class of the same
  supercategory ignored (that ground truth becomes a crowd region of this class);
- Oth: as Sim, for ground truth of every other class;
- BG: as Oth with every remaining false positive removed (precision 1 up to the recall reached);
- FN: 1, a perfect detector.

The shares a person reads are the steps between them: localisation = Loc - C50,
similar = Sim - Loc, other = Oth - Sim, background = BG - Oth, missed = 1 - BG.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detimb.utils import atomic_write

STEPS = ("C75", "C50", "Loc", "Sim", "Oth", "BG", "FN")
SHARES = ("localisation", "similar", "other", "background", "missed")


def _precision(gt: dict[str, Any], results: list[dict[str, Any]], category_id: int,
               ious: tuple[float, ...]) -> np.ndarray:
    """COCOeval's precision (T, R) for one category at the given IoU thresholds."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt
        coco.createIndex()
        ev = COCOeval(coco, coco.loadRes(copy.deepcopy(results)), "bbox")
        ev.params.catIds = [category_id]
        ev.params.iouThrs = np.array(ious)
        ev.params.areaRng, ev.params.areaRngLbl = [ev.params.areaRng[0]], ["all"]
        ev.evaluate()
        ev.accumulate()
    return ev.eval["precision"][:, :, 0, 0, -1]


def _ap(p: np.ndarray) -> float:
    valid = p[p > -1]
    return float(valid.mean()) if valid.size else float("nan")


def _as_ignored(gt: dict[str, Any], category_id: int, keep: set[int]) -> dict[str, Any]:
    """``gt`` with every annotation of a category in ``keep`` relabelled ``category_id`` and
    made a crowd region: detections on it count neither as right nor as wrong."""
    anns = [{**a, "category_id": category_id, "iscrowd": 1} if a["category_id"] in keep else a
            for a in gt["annotations"]]
    return {**gt, "annotations": anns}


def error_breakdown(gt: dict[str, Any], results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per category with ground truth: the APs of ``STEPS`` and the ``SHARES``."""
    supercategory = {c["id"]: c.get("supercategory") for c in gt["categories"]}
    present = sorted({a["category_id"] for a in gt["annotations"] if not a.get("iscrowd", 0)})
    rows = []
    for c in present:
        mine = [r for r in results if r["category_id"] == c]
        row: dict[str, Any] = {"category_id": c}
        if not mine:
            row.update({s: 0.0 for s in STEPS[:-1]}, FN=1.0)
        else:
            base = _precision(gt, mine, c, (0.75, 0.5, 0.1))
            similar = {o for o, s in supercategory.items() if o != c and s and s == supercategory[c]}
            sim = _precision(_as_ignored(gt, c, similar), mine, c, (0.1,))[0]
            others = {o for o in supercategory if o != c}
            oth = _precision(_as_ignored(gt, c, others), mine, c, (0.1,))[0]
            reached = oth > 0  # where some recall is reached; BG: every false positive gone
            recall_points = np.linspace(0, 1, len(oth))
            max_recall = float(recall_points[reached].max()) if reached.any() else 0.0
            bg = np.where(recall_points <= max_recall + 1e-12, 1.0, 0.0) if reached.any() else np.zeros_like(oth)
            row.update(C75=_ap(base[0]), C50=_ap(base[1]), Loc=_ap(base[2]), Sim=_ap(sim), Oth=_ap(oth), BG=_ap(bg),
                       FN=1.0)
        steps = [row[s] for s in STEPS]
        row.update({name: float(b - a) for name, a, b in zip(SHARES, steps[1:-1], steps[2:])})
        rows.append(row)
    return rows


def write_error_breakdown(out_dir: Path, rows: list[dict[str, Any]], per_class: list[dict[str, Any]],
                          stem: str = "error_breakdown") -> None:
    """``<stem>.csv`` and ``<stem>.png`` (a stacked bar per class, rare classes first)."""
    info = {e["category_id"]: e for e in per_class}
    order = [e["category_id"] for e in per_class if e["category_id"] in {r["category_id"] for r in rows}]
    by_id = {r["category_id"]: r for r in rows}

    def write_csv(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["category_id", "name", "group", *STEPS, *SHARES])
            for c in order:
                r = by_id[c]
                writer.writerow([c, info[c]["name"], info[c].get("group", ""), *(round(r[s], 6) for s in STEPS),
                                 *(round(r[s], 6) for s in SHARES)])

    atomic_write(out_dir / f"{stem}.csv", write_csv)
    atomic_write(out_dir / f"{stem}.png", lambda tmp: _plot(order, by_id, info, tmp))


def _plot(order: list[int], rows: dict[int, dict[str, Any]], info: dict[int, dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"C50": "#2ca02c", "localisation": "#1f77b4", "similar": "#9467bd", "other": "#e377c2",
               "background": "#ff7f0e", "missed": "#d62728"}
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(order) + 1.6))
    names = [f"{info[c]['name']}{' (rare)' if info[c].get('group') == 'rare' else ''}" for c in order]
    left = np.zeros(len(order))
    for key, colour in colours.items():
        values = np.nan_to_num(np.array([rows[c][key] for c in order], dtype=float))
        ax.barh(names, values, left=left, color=colour, label="AP@0.5" if key == "C50" else key)
        left += values
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of a perfect AP (IoU 0.5)")
    ax.set_title("what each class's AP loses, and to what (rare first)", fontsize=9)
    ax.invert_yaxis()
    ax.legend(fontsize=7, loc="lower right", ncol=3)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)
