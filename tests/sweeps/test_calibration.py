"""``--budget-minutes``: iterations from a timed run, by hand, and one real calibration."""

from __future__ import annotations

import json

import pytest

from detimb.errors import ConfigError
from detimb.sweeps.calibration import CALIBRATION_ITERS, calibrate
from tests.conftest import write_config


def test_iterations_from_the_calibration_log_by_hand(tmp_path):
    rows = [{"iter": 5, "sec_per_iter": 9.0}, {"iter": 10, "sec_per_iter": 0.5}, {"iter": 15, "sec_per_iter": 0.5}]
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    # the first row (start-up) is left out: 0.5 s per iteration; 6 runs, 2 at a time: 3 waves;
    # 10 minutes x 0.85 for training = 510 s -> 170 s per wave -> 340 iterations
    assert calibrate("unused.yaml", [], tmp_path, 10.0, runs=6, workers=2, threads=1) == 340
    with pytest.raises(ConfigError, match="do not fit; give more minutes"):
        calibrate("unused.yaml", [], tmp_path, 0.001, runs=6, workers=2, threads=1)
    with pytest.raises(ConfigError, match="--budget-minutes must be > 0"):
        calibrate("unused.yaml", [], tmp_path, 0.0, runs=6, workers=2, threads=1)


def test_a_real_calibration_run_trains_and_times(tiny_shapes, tmp_path):
    config = write_config(tmp_path, tiny_shapes)
    iters = calibrate(str(config), [], tmp_path / "calibration", 1.0, runs=2, workers=1, threads=1)
    log = [json.loads(line) for line in (tmp_path / "calibration" / "metrics.jsonl").read_text().splitlines()]
    assert max(r["iter"] for r in log) == CALIBRATION_ITERS and iters >= 1
