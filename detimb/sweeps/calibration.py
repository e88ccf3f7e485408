"""``--budget-minutes``: the iterations per run that fit the budget, from a short timed run."""

from __future__ import annotations

import json
import math
from pathlib import Path

from detimb.errors import ConfigError
from detimb.sweeps.runner import execute
from detimb.utils import atomic_write_json

CALIBRATION_ITERS = 20
SHARE_FOR_TRAINING = 0.85  # evaluation, start-up and the report take the rest


def calibrate(config: str, overrides: list[str], folder: Path, budget_minutes: float, *, runs: int, workers: int,
              threads: int) -> int:
    """Iterations per run so that ``runs`` runs, ``workers`` at a time, fit ``budget_minutes``:
    the baseline trains ``CALIBRATION_ITERS`` iterations with the sweep's threads, and its
    seconds per iteration (the metrics log's, past the first row) set the rest."""
    if budget_minutes <= 0:
        raise ConfigError(f"--budget-minutes must be > 0, got {budget_minutes}")
    log = folder / "metrics.jsonl"
    if not log.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        schedule = [f"train.schedule.max_iters={CALIBRATION_ITERS}", f"train.eval_interval={CALIBRATION_ITERS}",
                    "train.log_interval=5", f"train.schedule.warmup_iters={CALIBRATION_ITERS // 2}"]
        atomic_write_json(folder / "spec.json", {"config": config, "overrides": overrides + schedule, "test": None,
                                                 "test_images": None}, indent=2)
        outcome = execute(str(folder), threads)
        if outcome.code:
            raise ConfigError(f"--budget-minutes: the calibration run failed: {outcome.error.splitlines()[-1:]}")
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    seconds = [r["sec_per_iter"] for r in rows if "sec_per_iter" in r][1:] or \
        [r["sec_per_iter"] for r in rows if "sec_per_iter" in r]
    per_iter = sum(seconds) / len(seconds)
    waves = math.ceil(runs / workers)  # runs go ``workers`` at a time, each at the calibrated speed
    iters = math.floor(budget_minutes * 60 * SHARE_FOR_TRAINING / waves / per_iter)
    if iters < 1:
        raise ConfigError(f"--budget-minutes {budget_minutes}: {runs} runs at {per_iter:.2f} s per iteration do not"
                          " fit; give more minutes, fewer seeds or fewer remedies")
    return iters
