"""COCO evaluation with per-class AP, frequency groups, and files a person can read.

The 12 COCO numbers are the evaluator's own ``COCOeval.stats``: pycocotools' (the default)
or faster-coco-eval's (``evaluation.backend: faster_coco_eval``, the ``fast-eval`` extra;
the same matching in C++, the same stats). Per-class AP, AP50, AP75 and
AP small/medium/large are read from ``COCOeval.eval['precision']`` (T x R x K x A x M) the
way pycocotools' summary reads it, restricted to one class. Classes are grouped as LVIS
does by how many *training images* contain them: rare <= thresholds[0] < common <=
thresholds[1] < frequent, unless the file labels them itself (LVIS's ``frequency``: r/c/f).

LVIS-style files (images with ``neg_category_ids`` / ``not_exhaustive_category_ids``) are
scored by LVIS's federated rules through faster-coco-eval's LVIS mode (``lvis_style``):
a class's detections count only on images where the class is annotated or verified
absent, and unmatched detections on images whose labels of that class are not exhaustive
are not false positives. Plain COCO files are scored as before.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import io
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detimb.data.coco_validate import is_lvis_style
from detimb.data.label_map import LabelMap
from detimb.evaluation.diagnostics import pr_curves, write_pr_curves
from detimb.optional import require_extra
from detimb.utils import atomic_write, atomic_write_json

STAT_NAMES = ("mAP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
PER_CLASS_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def class_frequencies(train_data: dict[str, Any]) -> dict[int, dict[str, int]]:
    """Training images and instances per COCO category id (crowd annotations excluded)."""
    anns = [a for a in train_data["annotations"] if not a.get("iscrowd", 0)]
    instances = Counter(a["category_id"] for a in anns)
    images = Counter(cid for cid, _ in {(a["category_id"], a["image_id"]) for a in anns})
    return {c["id"]: {"images": images.get(c["id"], 0), "instances": instances.get(c["id"], 0)}
            for c in train_data["categories"]}


def frequency_group(image_count: int, thresholds: tuple[int, int]) -> str:
    if image_count <= thresholds[0]:
        return "rare"
    return "common" if image_count <= thresholds[1] else "frequent"


def class_groups(gt: dict[str, Any], train_freq: dict[int, dict[str, int]], thresholds: tuple[int, int]
                 ) -> dict[int, str]:
    """Category id -> 'rare' / 'common' / 'frequent': the file's own LVIS ``frequency``
    where it has one, else from the training images that contain the class (classes with
    neither are left out)."""
    out = {}
    for cat in gt["categories"]:
        if cat.get("frequency") in LVIS_GROUPS:
            out[cat["id"]] = LVIS_GROUPS[cat["frequency"]]
        elif cat["id"] in train_freq:
            out[cat["id"]] = frequency_group(train_freq[cat["id"]]["images"], thresholds)
    return out


def _lvis_labels(gt: dict[str, Any], groups: dict[int, str], thresholds: tuple[int, int]) -> dict[int, str]:
    """'r'/'c'/'f' for every category, as LVIS's evaluator needs: the known groups, and for
    the others the evaluated file's own image counts."""
    own = Counter(cid for cid, _ in {(a["category_id"], a["image_id"]) for a in gt["annotations"]})
    return {c["id"]: groups.get(c["id"], frequency_group(own.get(c["id"], 0), thresholds))[0]
            for c in gt["categories"]}


def _mean_valid(p: np.ndarray) -> float:
    valid = p[p > -1]
    return float(valid.mean()) if valid.size else float("nan")


def _nan_to_none(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


BACKENDS = ("pycocotools", "faster_coco_eval")


LVIS_GROUPS = {"r": "rare", "c": "common", "f": "frequent"}


def run_cocoeval(coco_gt: COCO, results: list[dict[str, Any]], iou_type: str, max_dets: int,
                 backend: str = "pycocotools", lvis_groups: dict[int, str] | None = None) -> Any:
    """An evaluated, accumulated and summarised COCOeval of ``backend`` (``.stats``, ``.eval``, ``.params``).
    ``lvis_groups`` (category id -> 'r'/'c'/'f') scores by LVIS's federated rules
    (faster-coco-eval's LVIS mode, whatever ``backend`` says)."""
    if backend not in BACKENDS:
        raise ValueError(f"evaluation.backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    results = copy.deepcopy(results)  # both loadRes implementations write ids, areas and boxes into the records
    with contextlib.redirect_stdout(io.StringIO()):
        if backend == "faster_coco_eval" or lvis_groups is not None:
            why = "evaluation.backend: faster_coco_eval" if lvis_groups is None else \
                "LVIS-style evaluation (the file has neg_category_ids / not_exhaustive_category_ids)"
            require_extra("fast-eval", why, ("faster_coco_eval",))
            from faster_coco_eval import COCO as FastCOCO
            from faster_coco_eval import COCOeval_faster

            dataset = copy.deepcopy(coco_gt.dataset)
            if lvis_groups is not None:
                for cat in dataset["categories"]:
                    cat["frequency"] = lvis_groups[cat["id"]]
            gt = FastCOCO(dataset)
            evaluator = COCOeval_faster(gt, gt.loadRes(results), iou_type, lvis_style=lvis_groups is not None)
        else:
            evaluator = COCOeval(coco_gt, coco_gt.loadRes(results), iou_type)
        evaluator.params.maxDets = [1, 10, max_dets]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def evaluate_coco(coco_gt: COCO, results: list[dict[str, Any]], iou_type: str, label_map: LabelMap,
                  train_freq: dict[int, dict[str, int]] | None = None,
                  thresholds: tuple[int, int] = (10, 100), max_dets: int = 100,
                  backend: str = "pycocotools") -> dict[str, Any]:
    """COCO evaluation of ``results`` (by ``backend``) plus per-class and group APs.

    ``results``: COCO result records (``bbox`` or ``segmentation``). With no detections at
    all every AP is 0 (pycocotools cannot load an empty result list).
    """
    gt_counts = Counter(a["category_id"] for a in coco_gt.dataset["annotations"] if not a.get("iscrowd", 0))
    train_freq = train_freq or {}
    groups_of = class_groups(coco_gt.dataset, train_freq, thresholds)
    lvis = is_lvis_style(coco_gt.dataset)
    per_class: list[dict[str, Any]] = []
    curves = None
    if results:
        evaluator = run_cocoeval(coco_gt, results, iou_type, max_dets, backend,
                                 lvis_groups=_lvis_labels(coco_gt.dataset, groups_of, thresholds) if lvis else None)
        stats = [float(s) for s in evaluator.stats[:12]]
        precision = evaluator.eval["precision"]
        cat_ids = list(evaluator.params.catIds)
        curves = pr_curves(evaluator, list(label_map.coco_ids))
    else:
        stats, precision, cat_ids = [0.0] * 12, None, []
    for coco_id, name in zip(label_map.coco_ids, label_map.names):
        entry: dict[str, Any] = {"category_id": coco_id, "name": name,
                                 "val_instances": gt_counts.get(coco_id, 0),
                                 "train_images": train_freq.get(coco_id, {}).get("images"),
                                 "train_instances": train_freq.get(coco_id, {}).get("instances")}
        if precision is not None and coco_id in cat_ids:
            k = cat_ids.index(coco_id)
            p = precision[:, :, k, :, -1]
            values = [_mean_valid(p[:, :, 0]), _mean_valid(p[0, :, 0]), _mean_valid(p[5, :, 0]),
                      _mean_valid(p[:, :, 1]), _mean_valid(p[:, :, 2]), _mean_valid(p[:, :, 3])]
        else:
            values = [0.0 if gt_counts.get(coco_id) else float("nan")] * 6
        entry.update({key: _nan_to_none(v) for key, v in zip(PER_CLASS_KEYS, values)})
        if coco_id in groups_of:
            entry["group"] = groups_of[coco_id]
        per_class.append(entry)
    per_class.sort(key=lambda e: (e["train_instances"] if e["train_instances"] is not None else 0,
                                  e["val_instances"]))
    aps = [e["AP"] for e in per_class if e["AP"] is not None]
    groups = {}
    for group in ("rare", "common", "frequent"):
        members = [e["AP"] for e in per_class if e.get("group") == group and e["AP"] is not None]
        groups[f"AP{group[0]}"] = float(np.mean(members)) if members else None
    return {
        "iou_type": iou_type,
        "stats": dict(zip(STAT_NAMES, stats)),
        "mAP_macro": float(np.mean(aps)) if aps else None,
        "groups": groups,
        "frequency_thresholds": list(thresholds),
        "group_source": "file" if any("frequency" in c for c in coco_gt.dataset["categories"]) else "training",
        "lvis_rules": lvis,
        "per_class": per_class,
        "pr_curves": curves,
    }


def format_table(report: dict[str, Any]) -> str:
    """Per-class AP as a text table, rare classes first."""
    head = f"{'class':<16}{'group':>9}{'train img':>10}{'train inst':>11}{'val inst':>9}" + "".join(
        f"{k:>7}" for k in PER_CLASS_KEYS)
    lines = [f"[{report['iou_type']}] per-class AP (rare first)", head, "-" * len(head)]
    fmt = lambda v: f"{v:7.3f}" if v is not None else f"{'-':>7}"  # noqa: E731
    for e in report["per_class"]:
        lines.append(f"{e['name'][:15]:<16}{e.get('group', '-'):>9}{_int(e['train_images']):>10}"
                     f"{_int(e['train_instances']):>11}{e['val_instances']:>9}"
                     + "".join(fmt(e[k]) for k in PER_CLASS_KEYS))
    s, g = report["stats"], report["groups"]
    lines.append("-" * len(head))
    lines.append(f"mAP {s['mAP']:.3f}  AP50 {s['AP50']:.3f}  AP75 {s['AP75']:.3f}  macro mAP "
                 f"{fmt(report['mAP_macro']).strip()}  APr {fmt(g['APr']).strip()}  APc {fmt(g['APc']).strip()}"
                 f"  APf {fmt(g['APf']).strip()}")
    if report.get("ap_fixed"):
        f = report["ap_fixed"]
        short = f" ({f['classes_under_k']} classes with fewer)" if f["classes_under_k"] else ""
        lines.append(f"AP-fixed {f['mAP']:.3f}  APr {fmt(f['APr']).strip()}  APc {fmt(f['APc']).strip()}  APf"
                     f" {fmt(f['APf']).strip()}  (top {f['dets_per_class']} per class, no per-image cap{short})")
    if report.get("ap_pool"):
        p = report["ap_pool"]
        lines.append(f"AP-pool  {fmt(p['mAP']).strip()}  APr {fmt(p['APr']).strip()}  APc {fmt(p['APc']).strip()}  APf"
                     f" {fmt(p['APf']).strip()}  (classes ranked together, the same cap)")
    return "\n".join(lines)


def _int(v: int | None) -> str:
    return "-" if v is None else str(v)


def write_reports(out_dir: str | Path, reports: dict[str, dict[str, Any]]) -> None:
    """``eval.json``, ``per_class_ap.csv`` and ``per_class_ap.png`` for each IoU type
    evaluated, and each one's precision-recall curves (``pr_curves[_segm].csv/png``)."""
    out_dir = Path(out_dir)
    atomic_write_json(out_dir / "eval.json", {k: {f: v for f, v in r.items() if f != "pr_curves"}
                                              for k, r in reports.items()}, indent=2)
    for iou_type, report in reports.items():
        if report.get("pr_curves"):
            write_pr_curves(out_dir, report["pr_curves"], report["per_class"],
                            "pr_curves" if iou_type == "bbox" else f"pr_curves_{iou_type}")

    def write_csv(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["iou_type", "category_id", "name", "group", "train_images", "train_instances",
                             "val_instances", *PER_CLASS_KEYS])
            for iou_type, report in reports.items():
                for e in report["per_class"]:
                    writer.writerow([iou_type, e["category_id"], e["name"], e.get("group", ""), e["train_images"],
                                     e["train_instances"], e["val_instances"], *(e[k] for k in PER_CLASS_KEYS)])

    atomic_write(out_dir / "per_class_ap.csv", write_csv)
    atomic_write(out_dir / "per_class_ap.png", lambda tmp: _plot(reports, tmp))


def _plot(reports: dict[str, dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(reports), figsize=(6 * len(reports), 0.45 * max(
        len(r["per_class"]) for r in reports.values()) + 1.8), squeeze=False)
    colours = {"rare": "#d62728", "common": "#ff7f0e", "frequent": "#1f77b4"}
    for ax, (iou_type, report) in zip(axes[0], reports.items()):
        rows = report["per_class"]
        names = [f"{e['name']} ({_int(e['train_instances'])})" for e in rows]
        values = [e["AP"] or 0.0 for e in rows]
        ax.barh(names, values, color=[colours.get(e.get("group", ""), "#7f7f7f") for e in rows])
        for y, v in enumerate(values):
            ax.text(v + 0.01, y, f"{v:.3f}", va="center", fontsize=8)
        ax.set_xlim(0, 1.1)
        ax.set_xlabel(f"{iou_type} AP@[.5:.95]")
        ax.set_title(f"{iou_type}: mAP {report['stats']['mAP']:.3f} (class (train instances), rare first)",
                     fontsize=9)
        ax.invert_yaxis()
        handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colours.values()]
        ax.legend(handles, list(colours), loc="upper right", fontsize=8, title="training frequency",
                  title_fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)
