"""A post-hoc remedy's strength chosen on the selection half, and its runs scored with it.

A post-hoc run (``worker``) leaves its trained run's results at every value of the
calibration's grid (``detimb.evaluation.calibration.GRIDS``: NorCal's gamma 0 to 1.5). The
sweep keeps one value per remedy: the one whose objective on the selection half, averaged
over the seeds, is highest (the smallest such value on a tie: the least change; 0 is the
uncalibrated model). Only the selection half chooses it, as it chooses the winner, so the
confirmation half still scores a choice it did not make. The remedy's runs are then scored
at that value like any trained run, and the recommended config carries it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from detimb.evaluation.calibration import grid_of
from detimb.sweeps.analysis import Half, RunScores, objective_on, score_results
from detimb.sweeps.plan import Run, grid_folder
from detimb.sweeps.remedies import remedy
from detimb.sweeps.worker import TEST_FOLDER, read_results


@dataclass(frozen=True)
class CalibrationPick:
    """A post-hoc remedy's ``parameter``, each value tried with its seed-mean ``objective``
    on the selection half (NaN: no ground truth for it there), and the value kept."""

    remedy: str
    kind: str
    parameter: str
    objective: str
    tried: tuple[tuple[float, float], ...]
    chosen: float

    @property
    def spec(self) -> dict[str, Any]:
        """The ``model.roi_head.calibration`` slot that applies the choice."""
        return {"type": self.kind, self.parameter: self.chosen}

    def words(self) -> str:
        tried = ", ".join(f"{v:g}: {'n/a' if math.isnan(m) else f'{m:.3f}'}" for v, m in self.tried)
        return (f"{self.remedy}: {self.parameter} = {self.chosen:g}, the best mean {self.objective} over the seeds on"
                f" the selection half (tried {tried})")

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "parameter": self.parameter, "objective": self.objective, "chosen": self.chosen,
                "tried": [{self.parameter: v, self.objective: None if math.isnan(m) else round(m, 6)}
                          for v, m in self.tried]}


def _mean(values: list[float]) -> float:
    """The mean over the seeds where the objective is defined (NaN: nowhere)."""
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def best_value(tried: tuple[tuple[float, float], ...]) -> float:
    finite = [(v, m) for v, m in tried if not math.isnan(m)]
    if not finite:
        return min(v for v, _ in tried)
    top = max(m for _, m in finite)
    return min(v for v, m in finite if m == top)


@dataclass(frozen=True)
class ScoringSets:
    """What the runs are scored against: the validation ground truth and its halves, the
    selection half that chooses, and (with ``--test``) the held-out file and its half."""

    gt: Any
    halves: list[Half]
    selection: Half
    fixed_k: int | None
    test: tuple[Any, list[Half]] | None = None


def score_post_hoc(runs: list[Run], sets: ScoringSets, objective: str, groups: list[str | None]
                   ) -> tuple[dict[str, dict[int, RunScores]], dict[str, dict[int, RunScores]], list[CalibrationPick]]:
    """Each post-hoc remedy's finished runs scored at its chosen value: on the validation
    halves, on the test file's (empty without ``--test``), and the choices."""
    by_remedy: dict[str, list[Run]] = {}
    for run in runs:
        if run.calibrates is not None and run.done_file.is_file():
            by_remedy.setdefault(run.remedy, []).append(run)
    on_val: dict[str, dict[int, RunScores]] = {}
    on_test: dict[str, dict[int, RunScores]] = {}
    picks = []
    for name, done in by_remedy.items():
        post_hoc = remedy(name).post_hoc
        if post_hoc is None:
            raise ValueError(f"{name}: a run that calibrates another is a post-hoc remedy's")
        parameter, values = grid_of(post_hoc.kind)
        tried = tuple((float(v), _mean([objective_on(read_results(grid_folder(r.folder, parameter, v)), sets.gt,
                                                     sets.selection, objective, groups, sets.fixed_k) for r in done]))
                      for v in values)
        pick = CalibrationPick(name, post_hoc.kind, parameter, objective, tried, best_value(tried))
        picks.append(pick)
        chosen = {r.seed: grid_folder(r.folder, parameter, pick.chosen) for r in done}
        on_val[name] = {seed: score_results(read_results(f), sets.gt, sets.halves, sets.fixed_k)
                        for seed, f in chosen.items()}
        if sets.test is not None:
            test_gt, test_halves = sets.test
            on_test[name] = {seed: score_results(read_results(f / TEST_FOLDER), test_gt, test_halves, sets.fixed_k)
                             for seed, f in chosen.items()}
    return on_val, on_test, picks
