"""Choosing a post-hoc calibration's strength on validation data (``detimb-eval --calibrate``).

NorCal's release gives no search for gamma (it is set by hand); detimb scores a grid of
values on the validation split, keeps the one with the best metric (mAP by default), and
writes the choice where the checkpoint can carry it: ``calibration.json``, a plot of the
metric against the value, and ``calibrated.pth``, the checkpoint whose stored config
names the calibration (with the training class counts it divides by), which
``Predictor.from_checkpoint``, ``detimb-infer`` and ``detimb-eval`` then use as they are.

The value is chosen on the images it is scored on: the figure is optimistic. Report it on
a held-out file (``--cfg-options data.val.ann_file=...``), or let the sweep split.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from pycocotools.coco import COCO
from torch.utils.data import DataLoader
from tqdm import tqdm

from detimb.config import config_to_yaml
from detimb.errors import ConfigError
from detimb.evaluation.coco_eval import evaluate_coco
from detimb.inference.records import predict
from detimb.inference.restore import RestoredModel
from detimb.losses import ClassStatistics
from detimb.models.calibrate import apply_calibration
from detimb.models.heads.calibration import CALIBRATIONS
from detimb.models.weights import load_checkpoint
from detimb.utils import atomic_write, atomic_write_json

# each calibration's strength and the values tried (0 is the uncalibrated model)
GRIDS: dict[str, tuple[str, tuple[float, ...]]] = {
    "norcal": ("gamma", (0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.5)),
    "logit_adjustment": ("tau", (0.0, 0.25, 0.5, 0.75, 1.0, 1.5)),
}
METRICS = ("mAP", "AP50", "APr", "APc", "APf")


@dataclass(frozen=True)
class CalibrationChoice:
    """The values tried, each one's ``metric`` on the validation split, and the best."""

    kind: str
    parameter: str
    metric: str
    values: tuple[float, ...]
    scores: tuple[float, ...]

    @property
    def best(self) -> float:
        """The value with the highest score; the smallest such value on a tie (least change)."""
        top = max(self.scores)
        return min(v for v, s in zip(self.values, self.scores) if s == top)

    @property
    def spec(self) -> dict[str, Any]:
        return {"type": self.kind, self.parameter: self.best}


def _metric(report: dict[str, Any], metric: str) -> float:
    value = report["groups"].get(metric) if metric in ("APr", "APc", "APf") else report["stats"][metric]
    return float("nan") if value is None else float(value)


def grid_of(kind: str) -> tuple[str, tuple[float, ...]]:
    """``kind``'s parameter and the values tried, or a named error."""
    if kind not in GRIDS:
        CALIBRATIONS.get(kind, "--calibrate")  # names the closest registered one
        raise ConfigError(f"--calibrate: {kind} has no search grid; choose one of {', '.join(GRIDS)}")
    return GRIDS[kind]


def calibrated_predictions(restored: RestoredModel, loader: DataLoader, kind: str, stats: ClassStatistics, *,
                           progress: bool = True) -> Iterator[tuple[float, list[dict[str, Any]]]]:
    """Each value of ``kind``'s grid with the COCO box results of ``loader``'s images under
    it; ``stats``: the training counts. The model is left calibrated with the last value."""
    parameter, values = grid_of(kind)
    for value in tqdm(values, desc=f"calibrating ({parameter})", disable=not progress):
        apply_calibration(restored.model, {"type": kind, parameter: value}, stats, restored.config.model.type)
        yield value, predict(restored.model, loader, restored.device, restored.label_map, progress=False)["bbox"]


def choose_calibration(restored: RestoredModel, loader: DataLoader, coco_gt: COCO, kind: str,
                       stats: ClassStatistics, *, metric: str = "mAP", progress: bool = True) -> CalibrationChoice:
    """Score each value of ``kind``'s grid on ``loader`` (the validation split, ground truth
    ``coco_gt``) by ``metric``, with ``stats`` the training counts; the model is left
    calibrated with the best value."""
    parameter, values = grid_of(kind)
    if metric not in METRICS:
        raise ConfigError(f"--calibrate-metric: {metric!r} is not one of {', '.join(METRICS)}")
    ecfg = restored.config.evaluation
    train_freq = {cid: {"images": n, "instances": m}
                  for cid, n, m in zip(restored.label_map.coco_ids, stats.images, stats.instances)}
    scores = []
    for _, results in calibrated_predictions(restored, loader, kind, stats, progress=progress):
        report = evaluate_coco(coco_gt, results, "bbox", restored.label_map, train_freq,
                               tuple(ecfg.frequency_thresholds), ecfg.max_dets, ecfg.backend)
        scores.append(_metric(report, metric))
    choice = CalibrationChoice(kind, parameter, metric, values, tuple(scores))
    apply_calibration(restored.model, choice.spec, stats, restored.config.model.type)
    return choice


def write_choice(choice: CalibrationChoice, restored: RestoredModel, stats: ClassStatistics, out_dir: Path) -> None:
    """``calibration.json``, ``calibration.png`` and ``calibrated.pth`` in ``out_dir``."""
    atomic_write_json(out_dir / "calibration.json", {
        "kind": choice.kind, "parameter": choice.parameter, "metric": choice.metric, "best": choice.best,
        "tried": [{choice.parameter: v, choice.metric: s} for v, s in zip(choice.values, choice.scores)],
        "chosen_on": "the validation split it is scored on (optimistic; see detimb-eval --help)"})
    _plot(choice, out_dir / "calibration.png")
    state = load_checkpoint(restored.source)
    config = copy.deepcopy(restored.config)
    OmegaConf.set_readonly(config, False)
    config.model.roi_head.calibration = choice.spec
    state["config"] = config_to_yaml(config)  # now naming the chosen calibration
    state["class_statistics"] = stats.to_dict()
    atomic_write(out_dir / "calibrated.pth", lambda tmp: torch.save(state, tmp))


def _plot(choice: CalibrationChoice, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(choice.values, choice.scores, marker="o")
    ax.axvline(choice.best, color="grey", linestyle=":")
    ax.set_xlabel(f"{choice.kind} {choice.parameter}")
    ax.set_ylabel(f"{choice.metric} (validation)")
    ax.set_title(f"{choice.kind}: best {choice.parameter} = {choice.best:g}")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
