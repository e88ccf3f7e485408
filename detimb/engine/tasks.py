"""What differs between training a detector and a segmentation model: data, model, scoring.

The trainer owns the loop; a task supplies the datasets, the model, the evaluation and
the between-epoch work (hard example reintroduction).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn
from torch.utils.data import DataLoader

from detimb.data.label_map import LabelMap
from detimb.data.loader import build_datasets, build_segmentation_datasets
from detimb.engine import distributed
from detimb.engine.coco_eval import evaluate_coco, format_table, write_reports
from detimb.engine.diagnostics import confusion_matrix, write_confusion
from detimb.engine.error_analysis import error_breakdown, write_error_breakdown
from detimb.engine.hard_examples import HardExampleMiner
from detimb.engine.inference import predict
from detimb.engine.seg_eval import (
    format_segmentation_table, predict_confusions, segmentation_report, write_segmentation_reports,
)
from detimb.data.pixels import PixelSpec, display_rgb
from detimb.losses.statistics import ClassStatistics
from detimb.models.builder import build_model, is_segmentation, uses_masks
from detimb.utils import atomic_write_json


CONFUSION_IOU, CONFUSION_SCORE = 0.5, 0.25  # the detection confusion matrix's match and score thresholds
SAMPLE_IMAGES, SAMPLE_SCORE = 6, 0.3  # validation pictures after training, and the score they draw from


class DetectionTask:
    """Faster R-CNN, RetinaNet, Mask R-CNN: COCO boxes (and masks), pycocotools scoring."""

    default_metric = "bbox_mAP"

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.with_masks = uses_masks(cfg.model)

    def build_datasets(self, seed: int, progress: bool = False) -> tuple[Any, Any]:
        return build_datasets(self.cfg.data, self.with_masks, seed, PixelSpec.from_config(self.cfg))

    def class_statistics(self, train_set: Any, label_map: LabelMap, train_freq: dict[int, dict[str, int]]
                         ) -> ClassStatistics:
        """Training instances and images per class, for class-aware losses."""
        return ClassStatistics(tuple(train_freq[cid]["instances"] for cid in label_map.coco_ids),
                               tuple(train_freq[cid]["images"] for cid in label_map.coco_ids),
                               len(train_set.records.data["images"]))

    def build_model(self, label_map: LabelMap, stats: ClassStatistics | None) -> nn.Module:
        return build_model(self.cfg.model, label_map, stats)

    def attach(self, train_set: Any, rank: int, world: int) -> None:
        """Set up between-epoch work over the training set."""

    def before_epoch(self, model: nn.Module, epoch: int, device: torch.device) -> None:
        """Work between epochs (runs on every rank)."""

    def log_stats(self) -> dict[str, float]:
        return {}

    def evaluate(self, model: nn.Module, loader: DataLoader, device: torch.device, label_map: LabelMap,
                 train_freq: dict[int, dict[str, int]] | None, out_dir: Path, *, amp: bool, progress: bool,
                 error_analysis: bool = False, samples_dir: Path | None = None) -> dict[str, Any]:
        """Score ``model`` on ``loader`` and write the reports (rank 0; other ranks get {});
        ``error_analysis`` adds COCO's per-class error breakdown (a few COCOeval runs per class);
        ``samples_dir`` receives a few validation images, ground truth beside these predictions,
        the images holding the rarest classes first."""
        results = predict(model, loader, device, label_map, amp, progress)
        if not distributed.is_main():
            return {}
        reports = evaluate_and_write(loader.dataset.coco, results, label_map, train_freq, self.cfg.evaluation,
                                     out_dir, self.with_masks, error_analysis=error_analysis)
        if samples_dir is not None:
            write_detection_samples(loader.dataset, results["bbox"], label_map, train_freq or {}, samples_dir,
                                    SAMPLE_IMAGES)
        return reports

    def flat_metrics(self, reports: dict[str, Any]) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for iou_type, r in reports.items():
            out.update({f"{iou_type}_{k}": v for k, v in r["stats"].items()})
            out[f"{iou_type}_mAP_macro"] = r["mAP_macro"]
            out.update({f"{iou_type}_{k}": v for k, v in r["groups"].items()})
        return out

    @staticmethod
    def format(reports: dict[str, Any]) -> str:
        return "\n\n".join(format_table(r) for r in reports.values())


class SegmentationTask(DetectionTask):
    """Semantic segmentation from COCO masks: class maps, patches, Dice/IoU scoring."""

    default_metric = "mDice_global"

    def __init__(self, cfg: DictConfig) -> None:
        super().__init__(cfg)
        self.with_masks = False
        self.miner: HardExampleMiner | None = None

    def build_datasets(self, seed: int, progress: bool = False) -> tuple[Any, Any]:
        return build_segmentation_datasets(self.cfg.data, seed, progress)

    def class_statistics(self, train_set: Any, label_map: LabelMap, train_freq: dict[int, dict[str, int]]
                         ) -> ClassStatistics:
        """Training pixels per class (annotation areas) as instances, and images per class,
        for class-weighted losses."""
        area: dict[int, float] = defaultdict(float)
        for a in train_set.records.data["annotations"]:
            if not a.get("iscrowd", 0):
                area[a["category_id"]] += float(a.get("area", a["bbox"][2] * a["bbox"][3]))
        return ClassStatistics(tuple(round(area[cid]) for cid in label_map.coco_ids),
                               tuple(train_freq[cid]["images"] for cid in label_map.coco_ids),
                               len(train_set.records.data["images"]))

    def build_model(self, label_map: LabelMap, stats: ClassStatistics | None) -> nn.Module:
        return build_model(self.cfg.model, label_map, stats, self.cfg.data.ignore_index)

    def attach(self, train_set: Any, rank: int, world: int) -> None:
        hard = self.cfg.data.train.hard_examples
        if hard.enabled:
            self.miner = HardExampleMiner(hard, train_set, self.cfg.data.val_batch_size, rank, world,
                                          self.cfg.train.seed)

    def before_epoch(self, model: nn.Module, epoch: int, device: torch.device) -> None:
        if self.miner is not None:
            self.miner.before_epoch(model, epoch, device)

    def log_stats(self) -> dict[str, float]:
        return dict(self.miner.stats) if self.miner is not None else {}

    def evaluate(self, model: nn.Module, loader: DataLoader, device: torch.device, label_map: LabelMap,
                 train_freq: dict[int, dict[str, int]] | None, out_dir: Path, *, amp: bool, progress: bool,
                 error_analysis: bool = False, samples_dir: Path | None = None) -> dict[str, Any]:
        """Segmentation: ``error_analysis`` and ``samples_dir`` do not apply (no boxes; no
        sample pictures yet)."""
        confusions = predict_confusions(model, loader, device, label_map.num_classes, self.cfg.data.ignore_index,
                                        amp, progress)
        if not distributed.is_main():
            return {}
        ecfg = self.cfg.evaluation
        regions = {name: label_map.labels_of(list(members), f"evaluation.regions.{name}")
                   for name, members in ecfg.regions.items()}
        report = segmentation_report(confusions, label_map, train_freq, tuple(ecfg.frequency_thresholds), regions)
        write_segmentation_reports(out_dir, report)
        return {"semantic": report}

    def flat_metrics(self, reports: dict[str, Any]) -> dict[str, float | None]:
        if not reports:
            return {}
        report = reports["semantic"]
        shown = set(self.cfg.evaluation.metrics)
        out = {k: v for k, v in report["summary"].items()
               if not (k.startswith(("mDice", "Dice")) and "dice" not in shown)
               and not (k.startswith("mIoU") and "iou" not in shown)}
        for e in report["per_class"][1:]:
            for key in ("dice", "iou"):
                if key in shown:
                    out[f"{key}/{e['name']}"] = e[key]
        return out

    @staticmethod
    def format(reports: dict[str, Any]) -> str:
        return format_segmentation_table(reports["semantic"])


def make_task(cfg: DictConfig) -> DetectionTask:
    return SegmentationTask(cfg) if is_segmentation(cfg.model) else DetectionTask(cfg)


def evaluate_and_write(coco_gt: Any, results: dict[str, list], label_map: LabelMap,
                       train_freq: dict[int, dict[str, int]] | None, ecfg: DictConfig, out_dir: Path,
                       with_masks: bool, *, error_analysis: bool = False) -> dict[str, Any]:
    """Evaluate bbox (and segm) results, and write the results JSON, reports and diagnostics
    (PR curves, confusion matrix, and with ``error_analysis`` the error breakdown) to ``out_dir``."""
    reports = {}
    for iou_type in ("bbox", "segm") if with_masks else ("bbox",):
        atomic_write_json(out_dir / f"results_{iou_type}.json", results[iou_type])
        reports[iou_type] = evaluate_coco(coco_gt, results[iou_type], iou_type, label_map, train_freq,
                                          tuple(ecfg.frequency_thresholds), ecfg.max_dets, ecfg.backend)
    write_reports(out_dir, reports)
    cm = confusion_matrix(coco_gt.dataset, results["bbox"], list(label_map.coco_ids), CONFUSION_IOU, CONFUSION_SCORE)
    write_confusion(out_dir, cm, list(label_map.names), CONFUSION_IOU, CONFUSION_SCORE)
    if error_analysis and results["bbox"]:
        write_error_breakdown(out_dir, error_breakdown(coco_gt.dataset, results["bbox"]), reports["bbox"]["per_class"])
    return reports


def write_detection_samples(dataset: Any, results: list[dict[str, Any]], label_map: LabelMap,
                            train_freq: dict[int, dict[str, int]], out_dir: Path, count: int) -> list[Path]:
    """``count`` validation images ranked by the rarest training class they contain, each
    drawn as ground truth | predictions (score >= SAMPLE_SCORE) into ``out_dir``."""
    import numpy as np

    from detimb.api import save_picture
    from detimb.engine.drawing import draw_detections, side_by_side

    names = dict(zip(label_map.coco_ids, label_map.names))
    rarity = {cid: train_freq.get(cid, {}).get("instances", 0) for cid in label_map.coco_ids}
    gt = defaultdict(list)
    for a in dataset.records.data["annotations"]:
        if not a.get("iscrowd", 0) and a["category_id"] in names:
            gt[a["image_id"]].append(a)
    ranked = sorted((min(rarity[a["category_id"]] for a in anns), image_id) for image_id, anns in gt.items())
    by_id = {im["id"]: im for im in dataset.images}
    preds = defaultdict(list)
    for r in results:
        if r["score"] >= SAMPLE_SCORE:
            preds[r["image_id"]].append(r)
    written = []
    for _, image_id in ranked[:count]:
        info = by_id[image_id]
        pixels = display_rgb(dataset.load_image(info))  # multi-band inputs drawn by their first three bands

        def xyxy(records: list[dict[str, Any]]) -> np.ndarray:
            return np.array([[x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in records)],
                            dtype=np.float32).reshape(-1, 4)

        truth, mine = gt[image_id], preds[image_id]
        left = draw_detections(pixels, xyxy(truth), np.array([a["category_id"] for a in truth]),
                               [names[a["category_id"]] for a in truth])
        right = draw_detections(pixels, xyxy(mine), np.array([r["category_id"] for r in mine]),
                                [names[r["category_id"]] for r in mine], np.array([r["score"] for r in mine]))
        path = out_dir / f"{Path(info['file_name']).stem}.png"
        save_picture(path, side_by_side(left, right))
        written.append(path)
    return written
