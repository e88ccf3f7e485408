"""``evaluate``: a checkpoint scored on its config's validation split, or COCO results files
scored against it. ``tools/eval.py`` and ``detimb.evaluate`` call this."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from torch.utils.data import DataLoader

from detimb.config import Overrides, load_config, override_items
from detimb.data.coco import coco_api
from detimb.data.coco_validate import read_coco_json, validate_coco, validate_results
from detimb.data.label_map import LabelMap
from detimb.data.loader import LoaderSettings, build_loader, build_val_dataset, evaluation_subset_note
from detimb.errors import DatasetError, DetimbError
from detimb.evaluation.coco_eval import class_frequencies, format_table
from detimb.evaluation.evaluators import EvalRequest, make_evaluator
from detimb.evaluation.reports import evaluate_and_write
from detimb.evaluation.calibration import choose_calibration, write_choice
from detimb.inference.restore import RestoredModel, restore, stored_config, training_statistics
from detimb.models.weights import load_checkpoint
from detimb.models.builder import is_segmentation

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationResult:
    """Where the reports were written, the reports by kind, and the per-class table."""

    out_dir: Path
    reports: dict[str, Any]
    table: str


def evaluate(config: str | Path | None, *, checkpoint: str | Path | None = None,
             results: Sequence[str | Path] | None = None, out: str | Path | None = None,
             overrides: Overrides = (), calibrate: str | None = None,
             calibrate_metric: str = "mAP", device: str | None = None, gt: str | Path | None = None
             ) -> EvaluationResult:
    """Evaluate a checkpoint on the config's validation split, or score COCO results files
    (bbox and/or segm; several files of one kind are scored together) against it. Writes
    the reports and diagnostics to ``out`` (default: ``<checkpoint folder>/eval``, or beside
    the first results file). ``overrides``: ``["key=value", ...]`` or ``{"key": value}``.
    ``calibrate``: a post-hoc calibration (``norcal``, ``logit_adjustment``) whose strength
    is chosen on the validation split by ``calibrate_metric`` before the evaluation (see
    ``detimb.evaluation.calibration``; a checkpoint only). ``device``: 'cpu', 'cuda', 'cuda:1'
    (default: CUDA when available). ``gt``: the COCO file that results files are scored
    against (default: the config's ``data.val``; e.g. the scene file given to
    ``detimb-infer --coco``)."""
    if (checkpoint is None) == (not results):
        raise DetimbError("evaluate: give a checkpoint or results files (one of the two)")
    items = override_items(overrides)
    if config is None and checkpoint is None:
        raise DetimbError("evaluate: results files are scored against a config's data.val (or --gt); give --config")
    cfg = load_config(config, items) if config is not None else stored_config(checkpoint, items)
    train_path = Path(cfg.data.train.ann_file)
    train_data = read_coco_json(train_path) if train_path.is_file() else None
    train_freq = class_frequencies(train_data) if train_data is not None else None
    if checkpoint is not None:
        return _evaluate_checkpoint(cfg, config, Path(checkpoint), items, train_freq, out,
                                    CalibrationRequest(calibrate, calibrate_metric) if calibrate else None, device)
    if calibrate:
        raise DetimbError("--calibrate rescores a checkpoint's classifier; results files hold only the final scores."
                          " Fix: give --checkpoint")
    train_classes = None if train_data is None else (train_data["categories"], train_path)
    return _score_results(cfg, [Path(r) for r in results or []], train_freq, out, gt, train_classes)


def same_class_ids(train: list[dict], truth: list[dict], train_path: Path, gt_path: Path) -> None:
    """Results carry category ids only, numbered as the model's training data numbers its
    classes: a ground-truth file that gives those ids to other names would score each class
    against another's boxes. Refused, naming the ids."""
    names = {c["id"]: c["name"] for c in train}
    clashes = [(c["id"], names[c["id"]], c["name"]) for c in truth if c["id"] in names and names[c["id"]] != c["name"]]
    if clashes:
        listed = "; ".join(f"id {i} is '{mine}' in {train_path.name} but '{theirs}' in {gt_path.name}"
                           for i, mine, theirs in clashes[:4])
        raise DatasetError(f"{gt_path}: numbers its classes unlike the training data ({listed}), so results would"
                           " be scored against another class's boxes. Fix: convert it with the same class order"
                           " (e.g. detimb-convert --classes), or renumber its categories")


@dataclass(frozen=True)
class CalibrationRequest:
    """Which calibration to fit on the validation split, and by which metric."""

    kind: str
    metric: str


def validation_loader(cfg: DictConfig, restored: RestoredModel) -> tuple[Any, DataLoader]:
    """``cfg``'s validation set (its ``evaluation.max_images`` subset, with a warning) for
    ``restored``'s classes and input pixels, and its loader."""
    val_set = build_val_dataset(cfg.data, restored.label_map, is_segmentation(cfg.model), restored.pixels,
                                cfg.evaluation.max_images)
    subset = evaluation_subset_note(val_set)
    if subset is not None:
        logger.warning(subset)
    return val_set, build_loader(val_set, batch_size=cfg.data.val_batch_size,
                                 settings=LoaderSettings.from_config(cfg.data, restored.device))


def _evaluate_checkpoint(cfg: DictConfig, config: str | Path | None, checkpoint: Path, overrides: list[str],
                         train_freq: dict[int, dict[str, int]] | None, out: str | Path | None,
                         calibration: CalibrationRequest | None, device: str | None) -> EvaluationResult:
    restored = restore(checkpoint, config=config, overrides=overrides, device=device)
    val_set, loader = validation_loader(cfg, restored)
    folder = Path(out or checkpoint.parent / "eval")
    if calibration is not None:
        stats = training_statistics(load_checkpoint(checkpoint), checkpoint, restored.config, restored.label_map)
        choice = choose_calibration(restored, loader, val_set.coco, calibration.kind, stats,
                                    metric=calibration.metric)
        write_choice(choice, restored, stats, folder)
        logger.info(f"{choice.kind}: {choice.parameter} = {choice.best:g} (best {choice.metric} on the validation"
                    f" split); the calibrated checkpoint is {folder / 'calibrated.pth'}")
    evaluator = make_evaluator(cfg)
    request = EvalRequest(out_dir=folder, train_freq=train_freq, error_analysis=True)
    reports = evaluator.evaluate(restored.model, loader, restored.device, restored.label_map, request)
    return EvaluationResult(folder, reports, evaluator.format(reports))


def _score_results(cfg: DictConfig, paths: list[Path], train_freq: dict[int, dict[str, int]] | None,
                   out: str | Path | None, gt: str | Path | None,
                   train_classes: tuple[list[dict], Path] | None) -> EvaluationResult:
    if is_segmentation(cfg.model):
        raise DetimbError("results files are COCO detection results; evaluate a segmentation model from its"
                          " checkpoint")
    # scoring reads the annotations only: the images need not be here (a scene scored on another machine)
    truth = validate_coco(gt or cfg.data.val.ann_file, None, cfg.data.val.out_of_bounds)
    if gt is not None and train_classes is not None:
        same_class_ids(train_classes[0], truth.categories, train_classes[1], Path(gt))
    for message in truth.warnings:
        logger.warning(message)
    label_map = LabelMap.from_categories(truth.categories)
    records_by_kind: dict[str, list] = {"bbox": [], "segm": []}
    for path in paths:  # every file checked before anything is scored or written
        if not path.is_file():
            raise DetimbError(f"--results: no file at {path}")
        try:
            records = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise DatasetError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from err
        records_by_kind[validate_results(path, records, truth.data)] += records
    folder = Path(out or paths[0].parent / "eval")
    reports = evaluate_and_write(coco_api(truth.data), records_by_kind, label_map, train_freq, cfg.evaluation, folder,
                                 with_masks=bool(records_by_kind["segm"]), error_analysis=True)
    return EvaluationResult(folder, reports, "\n\n".join(format_table(r) for r in reports.values()))
