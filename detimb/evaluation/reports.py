"""Detection results scored and written: per-class AP, PR curves, confusion matrix, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from detimb.data.label_map import LabelMap
from detimb.evaluation.ap_fixed import ap_fixed
from detimb.evaluation.ap_pool import ap_pool
from detimb.evaluation.coco_eval import evaluate_coco, write_reports
from detimb.evaluation.diagnostics import confusion_matrix, write_confusion
from detimb.evaluation.error_analysis import error_breakdown, write_error_breakdown
from detimb.utils import atomic_write_json

CONFUSION_IOU, CONFUSION_SCORE = 0.5, 0.25  # the detection confusion matrix's match and score thresholds


def evaluate_and_write(coco_gt: Any, results: dict[str, list], label_map: LabelMap,
                       train_freq: dict[int, dict[str, int]] | None, ecfg: DictConfig, out_dir: Path, *,
                       with_masks: bool, error_analysis: bool = False) -> dict[str, Any]:
    """Evaluate bbox (and segm) results, and write the results JSON, reports and diagnostics
    (PR curves, confusion matrix, and with ``error_analysis`` the error breakdown) to ``out_dir``."""
    reports = {}
    for iou_type in ("bbox", "segm") if with_masks else ("bbox",):
        atomic_write_json(out_dir / f"results_{iou_type}.json", results[iou_type])
        reports[iou_type] = evaluate_coco(coco_gt, results[iou_type], iou_type, label_map, train_freq,
                                          tuple(ecfg.frequency_thresholds), ecfg.max_dets, ecfg.backend)
        if ecfg.ap_fixed_dets_per_class:  # beside AP: a rare-class gain must survive it
            reports[iou_type]["ap_fixed"] = ap_fixed(coco_gt, results[iou_type], iou_type, label_map, train_freq,
                                                     tuple(ecfg.frequency_thresholds), ecfg.backend,
                                                     ecfg.ap_fixed_dets_per_class)
            if ecfg.ap_pool:  # and ranked across classes: rewards scores comparable between classes
                reports[iou_type]["ap_pool"] = ap_pool(coco_gt, results[iou_type], iou_type, train_freq,
                                                       tuple(ecfg.frequency_thresholds), ecfg.ap_fixed_dets_per_class)
    write_reports(out_dir, reports)
    cm = confusion_matrix(coco_gt.dataset, results["bbox"], list(label_map.coco_ids), CONFUSION_IOU, CONFUSION_SCORE)
    write_confusion(out_dir, cm, list(label_map.names), CONFUSION_IOU, CONFUSION_SCORE)
    if error_analysis and results["bbox"]:
        write_error_breakdown(out_dir, error_breakdown(coco_gt.dataset, results["bbox"]), reports["bbox"]["per_class"])
    return reports
