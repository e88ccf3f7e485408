"""One sweep run, in its own process (``python -m detimb.cli.sweep_worker RUN_FOLDER``).

The folder's ``spec.json`` names the config, the overrides and the held-out test file.
A training run trains (resuming from its ``last.pth`` after an interruption) and scores the
test file when there is one. A post-hoc run (``spec.json``'s ``post_hoc``: the calibration
and the finished training run it calibrates) restores that run's final checkpoint and
writes its results at every value of the calibration's grid, on the validation images and
the test file; the sweep chooses the value on the selection half. Either writes
``run.json`` (code version, config hash, seconds, the machine) last, so a run without it is
not finished. A finished training run keeps ``last.pth`` alone: the sweep scores it and
post-hoc runs restore it, while ``iter_N.pth`` (for resuming past a torn ``last.pth``) and
``best.pth`` (the same final evaluation: a sweep evaluates once, at the end) would triple a
sweep's disk use. The local pool and Ray's tasks both start this.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from detimb.config import load_config
from detimb.engine.checkpoint import prune_checkpoints
from detimb.engine.run import train
from detimb.evaluation.calibration import calibrated_predictions, grid_of
from detimb.evaluation.run import evaluate, validation_loader
from detimb.inference.restore import restore, training_statistics
from detimb.models.weights import load_checkpoint
from detimb.sweeps.plan import SweepError, code_version, config_hash, grid_folder
from detimb.sweeps.timings import machine
from detimb.utils import atomic_write_json

TEST_FOLDER = "test"
RESULTS_FILE = "results_bbox.json"


def read_results(folder: Path) -> list[dict[str, Any]]:
    """The COCO box results a run wrote in ``folder`` (none: a model that detected nothing)."""
    path = folder / RESULTS_FILE
    return json.loads(path.read_text()) if path.is_file() else []


def _test_overrides(spec: dict[str, Any]) -> list[str]:
    return [f"data.val.ann_file={spec['test']}", f"data.val.img_dir={spec['test_images']}"]


def check_reproduces(trained: Path, results: list[dict[str, Any]]) -> None:
    """The uncalibrated checkpoint must give its run's own results (the same detections, scores
    and boxes to float32 noise): a post-hoc remedy is paired with that run's baseline, which
    may have been trained by other code."""
    own = read_results(trained)

    def key(r: dict[str, Any]) -> tuple[Any, ...]:  # an order that float32 noise does not change
        return (r["image_id"], r["category_id"], -round(r["score"], 3), *(round(v) for v in r["bbox"]))

    mine, theirs = sorted(results, key=key), sorted(own, key=key)
    differ = len(mine) != len(theirs) or any(
        a["image_id"] != b["image_id"] or a["category_id"] != b["category_id"] or abs(a["score"] - b["score"]) > 1e-4
        or max(abs(x - y) for x, y in zip(a["bbox"], b["bbox"])) > 1e-2 for a, b in zip(mine, theirs))
    if differ:
        raise SweepError(f"{trained}: its checkpoint, uncalibrated, no longer gives the run's own results under this"
                         f" code ({len(mine)} detections against {len(theirs)} in {RESULTS_FILE}, or other scores or"
                         " boxes), so a post-hoc remedy would be paired with results of other code. Fix: give a new"
                         " --out, or check out the code that trained it")


def _calibrate(folder: Path, spec: dict[str, Any]) -> Path:
    """Results at every grid value of the post-hoc spec's calibration; the trained run's config."""
    kind, trained = spec["post_hoc"]["kind"], Path(spec["post_hoc"]["trained"])
    if not (trained / "run.json").is_file():
        raise SweepError(f"{folder}: the run it calibrates ({trained}) has not finished. Fix: run the sweep again,"
                         " which trains it first")
    checkpoint = trained / "last.pth"
    parameter, _ = grid_of(kind)
    for sub, overrides in [(None, [])] + ([(TEST_FOLDER, _test_overrides(spec))] if spec.get("test") else []):
        restored = restore(checkpoint, overrides=overrides)
        _, loader = validation_loader(restored.config, restored)
        stats = training_statistics(load_checkpoint(checkpoint), checkpoint, restored.config, restored.label_map)
        for value, results in calibrated_predictions(restored, loader, kind, stats, progress=False):
            if value == 0.0 and sub is None:  # every grid starts at 0, the uncalibrated model
                check_reproduces(trained, results)
            target = grid_folder(folder, parameter, value)
            atomic_write_json((target / sub if sub else target) / RESULTS_FILE, results)
    return trained / "config.yaml"


def run_one(folder: Path) -> None:
    spec = json.loads((folder / "spec.json").read_text())
    start = time.perf_counter()
    if spec.get("post_hoc"):
        config = _calibrate(folder, spec)
    else:
        last = folder / "last.pth"
        train(spec["config"], work_dir=folder, overrides=spec["overrides"], progress=False,
              resume=last if last.is_file() else None)
        if spec.get("test"):
            evaluate(folder / "config.yaml", checkpoint=folder / "last.pth", out=folder / TEST_FOLDER,
                     overrides=_test_overrides(spec))
        config = folder / "config.yaml"
    atomic_write_json(folder / "run.json", {"code": code_version(), "config_hash": config_hash(load_config(config)),
                                            "seconds": round(time.perf_counter() - start, 1),
                                            "machine": machine()}, indent=2)
    prune_checkpoints(folder, keep=0)
    (folder / "best.pth").unlink(missing_ok=True)
