"""``detimb-eval --calibrate``: the grid is scored, the best value kept (the least change on a
tie), and the calibrated checkpoint restores with it."""

from __future__ import annotations

import json

import pytest

from detimb.errors import ConfigError

from detimb.cli import evaluate as evaluate_cli
from detimb.config import load_config
from detimb.engine.trainer import Trainer
from detimb.evaluation.calibration import GRIDS, CalibrationChoice
from detimb.evaluation.run import evaluate
from detimb.inference.restore import restore
from tests.conftest import write_config


def test_the_best_value_and_the_least_change_on_a_tie():
    choice = CalibrationChoice("norcal", "gamma", "mAP", (0.0, 0.5, 1.0, 1.5), (0.2, 0.3, 0.3, 0.1))
    assert choice.best == 0.5 and choice.spec == {"type": "norcal", "gamma": 0.5}


@pytest.fixture(scope="module")
def trained(tiny_shapes, tmp_path_factory):
    root = tmp_path_factory.mktemp("calibrate")
    config = write_config(root, tiny_shapes, "faster_rcnn", train={"schedule": {"max_iters": 2}})
    Trainer(load_config(config), root / "run", progress=False).train()
    return config, root / "run" / "last.pth", root


@pytest.mark.parametrize("kind", sorted(GRIDS))
def test_eval_calibrate_writes_the_choice_and_a_calibrated_checkpoint(trained, kind):
    config, checkpoint, root = trained
    out = root / f"eval_{kind}"
    result = evaluate(config, checkpoint=checkpoint, out=out, calibrate=kind, calibrate_metric="APr")
    record = json.loads((out / "calibration.json").read_text())
    parameter, values = GRIDS[kind]
    assert [row[parameter] for row in record["tried"]] == list(values) and record["metric"] == "APr"
    scores = [row["APr"] for row in record["tried"]]
    assert record["best"] == min(v for v, s in zip(values, scores) if s == max(scores))
    assert (out / "calibration.png").stat().st_size > 0 and "bbox" in result.reports
    calibrated = restore(out / "calibrated.pth", device="cpu")
    spec = calibrated.config.model.roi_head.calibration
    assert spec["type"] == kind and spec[parameter] == record["best"]
    assert calibrated.model.roi_heads.calibration is not None
    assert restore(checkpoint, device="cpu").model.roi_heads.calibration is None  # the input is unchanged
    # the training config names no calibration: with it, the calibrated checkpoint would score uncalibrated
    with pytest.raises(ConfigError, match="was calibrated .* but .* states model.roi_head.calibration: None"):
        restore(out / "calibrated.pth", config=config, device="cpu")


def test_calibrate_needs_a_checkpoint_and_a_known_name(trained, capsys):
    config, checkpoint, root = trained
    assert evaluate_cli.main(["--config", str(config), "--results", str(root / "x.json"), "--calibrate",
                              "norcal"]) == 2
    assert "give --checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate_cli.parse_args(["--config", str(config), "--checkpoint", str(checkpoint), "--calibrate", "norcall"])
