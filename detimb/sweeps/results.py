"""A finished sweep scored and written: matches, halves, comparisons, verdict, reports and
the recommended config."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from detimb.config import load_config, save_config
from detimb.data.coco import coco_api
from detimb.data.coco_validate import validate_coco
from detimb.data.label_map import LabelMap
from detimb.errors import DatasetError
from detimb.losses.statistics import ClassStatistics
from detimb.sweeps import report, timings
from detimb.sweeps.analysis import (
    Comparison, Half, RunScores, class_groups_of, compare, interval_json, make_half, resolve_objective,
    score_results, verdict,
)
from detimb.sweeps.plan import Run, SweepSettings
from detimb.sweeps.post_hoc import CalibrationPick, ScoringSets, score_post_hoc
from detimb.sweeps.remedies import flatten, remedy
from detimb.sweeps.selection import Choice, Profile
from detimb.sweeps.split import Split, split_images
from detimb.sweeps.worker import TEST_FOLDER, read_results
from detimb.utils import atomic_write_json


@dataclass(frozen=True)
class TrainingSet:
    """What the sweep reads from the training set: classes, their statistics, the profile."""

    label_map: LabelMap
    stats: ClassStatistics
    frequencies: dict[int, dict[str, int]]
    profile: Profile


@dataclass(frozen=True)
class SweepResult:
    """The sweep's folder, the remedy it recommends (``baseline`` when none is confirmed),
    the verdict in words, and ``SWEEP.md``."""

    out_dir: Path
    recommended: str
    verdict: str
    report: Path


def _run_status(run: Run) -> dict[str, Any]:
    if run.done_file.is_file():
        return {"key": run.key, "status": "done", "post_hoc": run.calibrates is not None,
                **json.loads(run.done_file.read_text())}
    if run.failed_file.is_file():
        failure = json.loads(run.failed_file.read_text())
        lines = [ln for ln in failure["error"].splitlines() if ln.strip()]
        return {"key": run.key, "status": "failed", "code": failure["code"],
                "error_last_line": lines[-1] if lines else ""}
    return {"key": run.key, "status": "missing"}


def _scores(runs: list[Run], gt: Any, halves: list[Half], folder: str | None, fixed_k: int | None
            ) -> dict[str, dict[int, RunScores]]:
    """Per remedy and seed, the finished runs' scores on ``halves`` (from ``folder`` inside
    each run: None for the validation results, ``test`` for the held-out file's), with
    AP-fixed at ``fixed_k`` detections per class (None: not computed)."""
    out: dict[str, dict[int, RunScores]] = {}
    for run in runs:
        if run.calibrates is None and run.done_file.is_file():
            results = read_results(run.folder / folder if folder else run.folder)
            out.setdefault(run.remedy, {})[run.seed] = score_results(results, gt, halves, fixed_k)
    return out


def read_test_set(test: str | Path, val: dict[str, Any], img_dir: str | Path | None) -> dict[str, Any]:
    """The held-out ``--test`` file's COCO records, checked against the validation set's
    (``val``): the same categories, ids and names, since every run's model predicts those.
    With ``img_dir``, each image it lists must be there: the sweep checks this before any run
    trains, where a bad file would otherwise fail every run's last step."""
    try:
        data = validate_coco(test, img_dir).data
    except DatasetError as err:
        raise DatasetError(f"--test: {err}") from err
    mine, theirs = (sorted((c["id"], c["name"]) for c in d["categories"]) for d in (data, val))
    if mine != theirs:
        raise DatasetError(f"--test {test}: its categories {mine} are not the validation set's {theirs}. Fix: give"
                           " a test file with the same category ids and names")
    return data


def scoring_halves(cfg: DictConfig, *, test: str | None, bootstrap: int, split_seed: int
                   ) -> tuple[Any, Any, Split, list[Half], list[Half]]:
    """The validation GT, the confirmation GT (``test``'s, else the validation's), the split,
    and the halves each is scored on, with ``bootstrap`` draws (a sweep's settings)."""
    val = validate_coco(cfg.data.val.ann_file, None).data
    gt = coco_api(val)
    ids = tuple(sorted(gt.getImgIds()))
    if test is None:
        split = split_images(val, split_seed)
        selection = make_half("selection", ids, split.selection, bootstrap, split_seed + 1)
        confirmation = make_half("confirmation", ids, split.confirmation, bootstrap, split_seed + 2)
        return gt, gt, split, [selection, confirmation], [selection, confirmation]
    test_gt = coco_api(read_test_set(test, val, None))
    test_ids = tuple(sorted(test_gt.getImgIds()))
    split = Split(ids, test_ids, ())
    return gt, test_gt, split, [make_half("selection", ids, ids, bootstrap, split_seed + 1)], \
        [make_half("confirmation", test_ids, test_ids, bootstrap, split_seed + 2)]


def conclude(out_dir: Path, settings: SweepSettings, cfg: DictConfig, training: TrainingSet, runs: list[Run],
             choices: list[Choice], *, invocation: str, training_s: float, started: float) -> SweepResult:
    gt, confirm_gt, split, val_halves, confirm_halves = scoring_halves(
        cfg, test=settings.test, bootstrap=settings.bootstrap, split_seed=settings.split_seed)
    names = [c["name"] for c in sorted(gt.dataset["categories"], key=lambda c: c["id"])]
    groups = class_groups_of(gt, training.frequencies, tuple(cfg.evaluation.frequency_thresholds))
    fixed_k = int(cfg.evaluation.ap_fixed_dets_per_class) or None
    objective = resolve_objective(settings.objective, groups, _positives(gt, split.selection))
    on_val = _scores(runs, gt, val_halves, None, fixed_k)
    on_confirm = on_val if settings.test is None else _scores(runs, confirm_gt, confirm_halves, TEST_FOLDER,
                                                              fixed_k)
    sets = ScoringSets(gt, val_halves, val_halves[0], fixed_k,
                       None if settings.test is None else (confirm_gt, confirm_halves))
    post_val, post_test, picks = score_post_hoc(runs, sets, objective, groups)
    on_val.update(post_val)
    if settings.test is not None:
        on_confirm.update(post_test)
    base_val, base_confirm = on_val.get("baseline", {}), on_confirm.get("baseline", {})
    selection: dict[str, Comparison] = {}
    confirmation: dict[str, Comparison] = {}
    for name in settings.remedies:
        if name == "baseline" or name not in on_val:
            continue
        sel = compare(name, base_val, on_val[name], "selection", groups, names)
        con = compare(name, base_confirm, on_confirm.get(name, {}), "confirmation", groups, names)
        if sel is not None:
            selection[name] = sel
        if con is not None:
            confirmation[name] = con
    result = verdict(selection, confirmation, objective)
    _write_recommended(out_dir, settings, cfg, result.recommended, {p.remedy: p for p in picks})
    statuses = [_run_status(r) for r in runs]
    summary = _summary(settings, objective, split, statuses, selection, confirmation, choices, result)
    summary["post_hoc"] = {p.remedy: p.to_json() for p in picks}
    timings.record(out_dir, invocation, training_s=training_s, total_s=time.perf_counter() - started,
                   concluded=True)
    summary["seconds"] = timings.totals(out_dir)
    text = report.markdown(summary, selection, confirmation, choices, result, [p.words() for p in picks])
    report.write_markdown(out_dir / "SWEEP.md", text)
    atomic_write_json(out_dir / "sweep.json", summary, indent=2)
    if selection:
        report.forest_plot(out_dir / "forest.png", selection, confirmation, objective)
        report.per_class_plot(out_dir / "per_class.png", selection, names)
    return SweepResult(out_dir, result.recommended, result.words, out_dir / "SWEEP.md")


def _positives(gt: Any, images: tuple[int, ...]) -> np.ndarray:
    wanted = set(images)
    cats = sorted(gt.getCatIds())
    counts = {c: 0 for c in cats}
    for a in gt.dataset["annotations"]:
        if a["image_id"] in wanted and not a.get("iscrowd", 0):
            counts[a["category_id"]] += 1
    return np.array([counts[c] for c in cats])


def _write_recommended(out_dir: Path, settings: SweepSettings, cfg: DictConfig, name: str,
                       picks: dict[str, CalibrationPick]) -> None:
    """A complete config that trains the recommended remedy on the user's data (the user's
    own schedule and seed: the sweep's shortened schedule is not carried over); a post-hoc
    remedy's with the calibration it chose."""
    calibration = [f"model.roi_head.calibration={json.dumps(picks[name].spec)}"] if name in picks else []
    fragment = remedy(name, settings.fragments).fragment(cfg)
    chosen = load_config(settings.config, list(settings.overrides) + flatten(fragment) + calibration)
    save_config(chosen, out_dir / "recommended.yaml")


def _summary(settings: SweepSettings, objective: str, split: Split, statuses: list[dict[str, Any]],
             selection: dict[str, Comparison], confirmation: dict[str, Comparison], choices: list[Choice],
             result: Any) -> dict[str, Any]:
    method = next((i.method for c in selection.values() for i in c.metrics.values() if i is not None), "n/a")
    comparisons = {half: {name: {"seeds": list(c.seeds),
                                 "metrics": {m: interval_json(i) for m, i in c.metrics.items()},
                                 "per_class": {k: interval_json(i) for k, i in c.per_class.items()}}
                          for name, c in comps.items()}
                   for half, comps in (("selection", selection), ("confirmation", confirmation))}
    trained = [r for r in statuses if r["status"] == "done" and not r["post_hoc"]]
    trained_on = Counter(str(r.get("machine", timings.NOT_RECORDED)) for r in trained)
    return {**settings.to_json(), "objective": objective, "method": method,
            "trained_by": sorted({r["code"] for r in trained}), "trained_on": dict(sorted(trained_on.items())),
            "halves": {"selection": len(split.selection), "confirmation": len(split.confirmation)},
            "confirmation_source": settings.test or "the other half of the validation images",
            "one_half_only": list(split.one_half_only), "runs": statuses,
            "choices": [{"name": c.name, "chosen": c.chosen, "reason": c.reason} for c in choices],
            "comparisons": comparisons, "verdict": result.words, "chosen_on_selection": result.chosen,
            "recommended": result.recommended}
