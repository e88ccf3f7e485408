"""Scoring a model on a labelled loader: detection (COCO/LVIS AP) or semantic segmentation
(Dice/IoU). Training's periodic evaluation and ``evaluate`` share these."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import DataLoader

from detimb import distributed
from detimb.data.label_map import LabelMap
from detimb.evaluation.coco_eval import format_table
from detimb.evaluation.reports import evaluate_and_write
from detimb.evaluation.seg_eval import (
    format_segmentation_table, predict_confusions, segmentation_report, write_segmentation_reports,
)
from detimb.inference.records import predict
from detimb.models.builder import is_segmentation, uses_masks
from detimb.visualization.samples import SAMPLE_IMAGES, write_detection_samples


@dataclass(frozen=True, kw_only=True)
class EvalRequest:
    """One evaluation: where the reports go, the training set's class frequencies (for the
    rare/common/frequent groups; None: the validation set's), a progress bar, COCO's
    per-class error breakdown (a few COCOeval runs per class), and a folder for a few
    validation images drawn as ground truth beside predictions (rarest classes first)."""

    out_dir: Path
    train_freq: dict[int, dict[str, int]] | None = None
    progress: bool = True
    error_analysis: bool = False
    samples_dir: Path | None = None


class Evaluator(ABC):
    """Scores a model on a loader and writes its reports; rank 0 returns them, others {}."""

    default_metric: str
    headline: tuple[str, ...]  # the metrics a training run prints after each evaluation

    @abstractmethod
    def evaluate(self, model: nn.Module, loader: DataLoader, device: torch.device, label_map: LabelMap,
                 request: EvalRequest) -> dict[str, Any]:
        """The reports, by kind (``bbox``, ``segm``, ``semantic``)."""

    @abstractmethod
    def flat_metrics(self, reports: dict[str, Any]) -> dict[str, float | None]:
        """One number per metric name, for the metrics log and ``train.best_metric``."""

    @abstractmethod
    def format(self, reports: dict[str, Any]) -> str:
        """The per-class table a person reads."""


class DetectionEvaluator(Evaluator):
    """COCO boxes (and masks), scored with pycocotools or faster-coco-eval."""

    default_metric = "bbox_mAP"
    headline = ("bbox_mAP", "bbox_AP50", "bbox_APr", "bbox_APc", "bbox_APf", "bbox_AP_fixed", "segm_mAP")

    def __init__(self, ecfg: DictConfig, *, with_masks: bool) -> None:
        self.ecfg, self.with_masks = ecfg, with_masks

    def evaluate(self, model: nn.Module, loader: DataLoader, device: torch.device, label_map: LabelMap,
                 request: EvalRequest) -> dict[str, Any]:
        results = predict(model, loader, device, label_map, progress=request.progress)
        if not distributed.is_main():
            return {}
        reports = evaluate_and_write(loader.dataset.coco, results, label_map, request.train_freq, self.ecfg,
                                     request.out_dir, with_masks=self.with_masks,
                                     error_analysis=request.error_analysis)
        if request.samples_dir is not None:
            write_detection_samples(loader.dataset, results["bbox"], label_map, request.train_freq or {},
                                    request.samples_dir, SAMPLE_IMAGES)
        return reports

    def flat_metrics(self, reports: dict[str, Any]) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for iou_type, r in reports.items():
            out.update({f"{iou_type}_{k}": v for k, v in r["stats"].items()})
            out[f"{iou_type}_mAP_macro"] = r["mAP_macro"]
            out.update({f"{iou_type}_{k}": v for k, v in r["groups"].items()})
            if r.get("ap_fixed"):
                fixed = r["ap_fixed"]
                out[f"{iou_type}_AP_fixed"] = fixed["mAP"]
                out.update({f"{iou_type}_{g}_fixed": fixed[g] for g in ("APr", "APc", "APf")})
            if r.get("ap_pool"):
                pooled = r["ap_pool"]
                out[f"{iou_type}_AP_pool"] = pooled["mAP"]
                out.update({f"{iou_type}_{g}_pool": pooled[g] for g in ("APr", "APc", "APf")})
        return out

    def format(self, reports: dict[str, Any]) -> str:
        return "\n\n".join(format_table(r) for r in reports.values())


class SegmentationEvaluator(Evaluator):
    """Per-class and region Dice/IoU over the whole validation set (no boxes: no error
    breakdown and no sample pictures)."""

    default_metric = "mDice_global"
    headline = ("mDice_global", "mIoU_global", "mDice", "Dicer", "Dicef")

    def __init__(self, ecfg: DictConfig, *, ignore_index: int) -> None:
        self.ecfg, self.ignore_index = ecfg, ignore_index

    def evaluate(self, model: nn.Module, loader: DataLoader, device: torch.device, label_map: LabelMap,
                 request: EvalRequest) -> dict[str, Any]:
        confusions = predict_confusions(model, loader, device, label_map.num_classes, self.ignore_index,
                                        progress=request.progress)
        if not distributed.is_main():
            return {}
        regions = {name: label_map.labels_of(list(members), f"evaluation.regions.{name}")
                   for name, members in self.ecfg.regions.items()}
        report = segmentation_report(confusions, label_map, request.train_freq,
                                     tuple(self.ecfg.frequency_thresholds), regions)
        write_segmentation_reports(request.out_dir, report)
        return {"semantic": report}

    def flat_metrics(self, reports: dict[str, Any]) -> dict[str, float | None]:
        if not reports:
            return {}
        report = reports["semantic"]
        shown = set(self.ecfg.metrics)
        out = {k: v for k, v in report["summary"].items()
               if not (k.startswith(("mDice", "Dice")) and "dice" not in shown)
               and not (k.startswith("mIoU") and "iou" not in shown)}
        for e in report["per_class"][1:]:
            for key in ("dice", "iou"):
                if key in shown:
                    out[f"{key}/{e['name']}"] = e[key]
        return out

    def format(self, reports: dict[str, Any]) -> str:
        return format_segmentation_table(reports["semantic"])


def make_evaluator(cfg: DictConfig) -> Evaluator:
    """The evaluator of the model ``cfg`` describes."""
    if is_segmentation(cfg.model):
        return SegmentationEvaluator(cfg.evaluation, ignore_index=cfg.data.ignore_index)
    return DetectionEvaluator(cfg.evaluation, with_masks=uses_masks(cfg.model))
