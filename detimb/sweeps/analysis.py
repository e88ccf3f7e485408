"""From the runs' detections to each remedy's paired differences, the winner and the verdict.

Every run's detections are matched to the ground truth once (``scoring``); AP is then
computed on the selection half and the confirmation half, and on ``bootstrap`` draws of
each half's images, the same draws for every run. Each remedy is compared with the
baseline of the same seed; the interval combines seeds and images (``statistics``). The
winner is the remedy with the largest gain in the objective on the selection half; its
difference on the confirmation half is the headline, and it is recommended only when that
interval leaves out 0 on the side of a gain.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pycocotools.coco import COCO

from detimb.evaluation.coco_eval import class_groups
from detimb.sweeps.scoring import MAX_DETS, RunMatches, ap_table, match_run, most_per_image_and_class
from detimb.sweeps.statistics import Interval, combined_interval

GROUP_METRICS = {"APr": "rare", "APc": "common", "APf": "frequent"}
METRICS = ("APr", "APc", "APf", "mAP")
# AP-fixed's (Dave et al. 2021) groups, in METRICS' order: the same metric with no per-image
# cap and each class's top k detections over the images scored
FIXED_METRICS = ("APr-fixed", "APc-fixed", "APf-fixed", "AP-fixed")


@dataclass(frozen=True)
class Half:
    """A set of evaluation images (as weights over the matched images) and its bootstrap draws."""

    name: str
    weights: np.ndarray  # (I,)
    draws: np.ndarray  # (B, I)


def make_half(name: str, image_ids: tuple[int, ...], members: tuple[int, ...], bootstrap: int, seed: int) -> Half:
    """``members`` of ``image_ids`` as a half, with ``bootstrap`` draws of as many images with replacement."""
    position = {image_id: k for k, image_id in enumerate(image_ids)}
    index = np.array([position[i] for i in members], dtype=np.int64)
    weights = np.zeros(len(image_ids))
    weights[index] = 1.0
    rng = np.random.default_rng(seed)
    draws = np.zeros((bootstrap, len(image_ids)))
    for b in range(bootstrap):
        np.add.at(draws[b], index[rng.integers(0, len(index), len(index))], 1.0)
    return Half(name, weights, draws)


def group_metrics(table: np.ndarray, groups: list[str | None]) -> dict[str, np.ndarray]:
    """APr, APc, APf and mAP of per-class AP ``table`` (..., K): means over the classes with
    ground truth (NaN where a group has none)."""
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an empty group is NaN, as intended
        for name, group in GROUP_METRICS.items():
            columns = [k for k, g in enumerate(groups) if g == group]
            out[name] = np.nanmean(table[..., columns], axis=-1) if columns else np.full(table.shape[:-1], np.nan)
        out["mAP"] = np.nanmean(table, axis=-1)
    return out


@dataclass
class RunScores:
    """One run's per-class AP on each half (K,) and on each half's draws (B, K); the same
    for AP-fixed (empty when it is not computed)."""

    full: dict[str, np.ndarray] = field(default_factory=dict)
    draws: dict[str, np.ndarray] = field(default_factory=dict)
    fixed_full: dict[str, np.ndarray] = field(default_factory=dict)
    fixed_draws: dict[str, np.ndarray] = field(default_factory=dict)


def uncapped(matches: RunMatches, gt: COCO, results: list[dict[str, Any]]) -> RunMatches:
    """AP-fixed's matches (no per-image cap): ``matches`` themselves unless an image holds
    more detections of one class than COCO's cap keeps."""
    return matches if most_per_image_and_class(results) <= MAX_DETS else match_run(gt, results, max_dets=None)


def score_results(results: list[dict[str, Any]], gt: COCO, halves: list[Half], fixed_k: int | None) -> RunScores:
    """A run's COCO box ``results`` scored on ``halves``, with AP-fixed at ``fixed_k``
    detections per class (None: not computed)."""
    matches = match_run(gt, results)
    return score_run(matches, halves, None if fixed_k is None else (uncapped(matches, gt, results), fixed_k))


def objective_on(results: list[dict[str, Any]], gt: COCO, half: Half, objective: str, groups: list[str | None],
                 fixed_k: int | None) -> float:
    """``objective`` (a METRICS or FIXED_METRICS name) of ``results`` on ``half``'s images,
    without the bootstrap (NaN where its group has no ground truth there)."""
    matches = match_run(gt, results)
    if objective in FIXED_METRICS:
        if fixed_k is None:
            raise ValueError(f"{objective} needs AP-fixed's k")
        table = ap_table(uncapped(matches, gt, results), half.weights[None], per_class=fixed_k)[0]
        return float(group_metrics(table, groups)[METRICS[FIXED_METRICS.index(objective)]])
    return float(group_metrics(ap_table(matches, half.weights[None])[0], groups)[objective])


def score_run(matches: RunMatches, halves: list[Half], fixed: tuple[RunMatches, int] | None = None) -> RunScores:
    """AP from ``matches`` (COCO's per-image cap); AP-fixed from ``fixed``'s uncapped
    matches and its per-class k, when given."""
    scores = RunScores()
    for half in halves:
        scores.full[half.name] = ap_table(matches, half.weights[None])[0]
        scores.draws[half.name] = ap_table(matches, half.draws)
        if fixed is not None:
            fixed_matches, k = fixed
            scores.fixed_full[half.name] = ap_table(fixed_matches, half.weights[None], per_class=k)[0]
            scores.fixed_draws[half.name] = ap_table(fixed_matches, half.draws, per_class=k)
    return scores


@dataclass(frozen=True)
class Comparison:
    """A remedy against the baseline on one half: intervals per metric and per class."""

    remedy: str
    half: str
    seeds: tuple[int, ...]
    metrics: dict[str, Interval | None]
    per_class: dict[str, Interval | None]


def compare(remedy: str, baseline: dict[int, RunScores], mine: dict[int, RunScores], half: str,
            groups: list[str | None], names: list[str], level: float = 0.95) -> Comparison | None:
    """``remedy``'s runs against the baseline's of the same seeds on ``half``; None when no
    seed has both."""
    seeds = tuple(sorted(set(baseline) & set(mine)))
    if not seeds:
        return None
    full_diff = np.stack([mine[s].full[half] - baseline[s].full[half] for s in seeds])  # (S, K)
    draw_diff = np.stack([mine[s].draws[half] - baseline[s].draws[half] for s in seeds])  # (S, B, K)
    fixed = all(half in r[s].fixed_full for r in (mine, baseline) for s in seeds)
    metrics: dict[str, Interval | None] = {m: None for m in FIXED_METRICS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        metrics.update(_group_intervals(METRICS, [(mine[s].full[half], baseline[s].full[half]) for s in seeds],
                                        [(mine[s].draws[half], baseline[s].draws[half]) for s in seeds],
                                        groups, level))
        if fixed:
            metrics.update(_group_intervals(
                FIXED_METRICS, [(mine[s].fixed_full[half], baseline[s].fixed_full[half]) for s in seeds],
                [(mine[s].fixed_draws[half], baseline[s].fixed_draws[half]) for s in seeds], groups, level))
        per_class = {name: combined_interval(full_diff[:, k], np.nanmean(draw_diff[:, :, k], axis=0), level)
                     for k, name in enumerate(names)}
    return Comparison(remedy, half, seeds, metrics, per_class)


def _group_intervals(names: tuple[str, ...], full: list[tuple[np.ndarray, np.ndarray]],
                     draws: list[tuple[np.ndarray, np.ndarray]], groups: list[str | None], level: float
                     ) -> dict[str, Interval | None]:
    """The group metrics' intervals, named ``names`` (in METRICS' order), from each seed's
    (remedy, baseline) per-class tables on the half (K,) and on its draws (B, K)."""
    full_m = [(group_metrics(m, groups), group_metrics(b, groups)) for m, b in full]
    draw_m = [(group_metrics(m, groups), group_metrics(b, groups)) for m, b in draws]
    out = {}
    for name, metric in zip(names, METRICS):
        per_seed = np.array([m[metric] - b[metric] for m, b in full_m])
        boot = np.nanmean(np.stack([m[metric] - b[metric] for m, b in draw_m]), axis=0)
        out[name] = combined_interval(per_seed, boot, level)
    return out


def resolve_objective(objective: str, groups: list[str | None], positives: np.ndarray) -> str:
    """``auto``: APr when a rare class has ground truth in the evaluation images, else APc,
    else mAP; a named objective as it is."""
    if objective != "auto":
        return objective
    for metric in ("APr", "APc"):
        if any(g == GROUP_METRICS[metric] and p > 0 for g, p in zip(groups, positives)):
            return metric
    return "mAP"


@dataclass(frozen=True)
class Verdict:
    """The remedy chosen on the selection half (None: nothing gained there), its
    confirmation interval, what is recommended, and why, in words."""

    chosen: str | None
    confirmation: Interval | None
    recommended: str
    words: str


def verdict(selection: dict[str, Comparison], confirmation: dict[str, Comparison], objective: str) -> Verdict:
    gains = {name: c.metrics[objective] for name, c in selection.items() if c.metrics.get(objective) is not None}
    if not gains or max(i.mean for i in gains.values()) <= 0:
        return Verdict(None, None, "baseline", f"No remedy raised {objective} on the selection half: keep the"
                       " baseline.")
    chosen = max(gains, key=lambda n: gains[n].mean)
    confirm = confirmation.get(chosen)
    interval = None if confirm is None else confirm.metrics.get(objective)
    picked = (f"{chosen} had the largest {objective} gain on the selection half"
              f" ({gains[chosen].mean:+.3f} [{gains[chosen].low:+.3f}, {gains[chosen].high:+.3f}]).")
    if interval is None:
        return Verdict(chosen, None, "baseline", f"{picked} The confirmation images hold no ground truth for"
                       f" {objective}: nothing is confirmed, keep the baseline.")
    if interval.low > 0:
        return Verdict(chosen, interval, chosen, f"{picked} On the confirmation half it gains {interval.mean:+.3f}"
                       f" [{interval.low:+.3f}, {interval.high:+.3f}]: beyond noise. Recommended: {chosen}.")
    return Verdict(chosen, interval, "baseline", f"{picked} On the confirmation half it gives {interval.mean:+.3f}"
                   f" [{interval.low:+.3f}, {interval.high:+.3f}]: within noise, so nothing beats the baseline"
                   " beyond noise. Recommended: the baseline.")


def class_groups_of(gt: COCO, train_freq: dict[int, dict[str, int]], thresholds: tuple[int, int]
                    ) -> list[str | None]:
    """Each evaluated class's rare/common/frequent group, as the evaluation reports it."""
    groups = class_groups(gt.dataset, train_freq, thresholds)
    return [groups.get(cid) for cid in sorted(gt.getCatIds())]


def _number(x: float) -> float | None:
    return None if math.isnan(x) else round(float(x), 6)


def interval_json(interval: Interval | None) -> dict[str, Any] | None:
    """The interval as JSON (NaN as null)."""
    if interval is None or math.isnan(interval.mean):
        return None
    return {"mean": _number(interval.mean), "low": _number(interval.low), "high": _number(interval.high),
            "per_seed": [_number(d) for d in interval.per_seed], "beyond_noise": interval.beyond_noise}
