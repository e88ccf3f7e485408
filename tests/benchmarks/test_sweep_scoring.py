"""The sweep-scoring benchmark on a finished sweep's folder laid out by hand: it scores the
finished training runs only, perfect detections score AP 1, and ``--against`` compares
score files."""

import json

import numpy as np
import pytest

from benchmarks import sweep_scoring
from detimb.config import load_config, save_config
from tests.conftest import write_config


@pytest.fixture
def finished_sweep(tmp_path, tiny_shapes):
    sweep = tmp_path / "sweep"
    cfg = load_config(write_config(tmp_path, tiny_shapes))
    val = json.loads((tiny_shapes / "annotations/val.json").read_text())
    perfect = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
               for a in val["annotations"]]
    sweep.mkdir()
    (sweep / "plan.json").write_text(json.dumps({"test": None, "bootstrap": 20, "split_seed": 0}))
    for remedy, done, post_hoc in [("baseline", True, None), ("seesaw", False, None),
                                   ("norcal", True, {"kind": "norcal", "trained": "runs/baseline/seed0"})]:
        run = sweep / "runs" / remedy / "seed0"
        run.mkdir(parents=True)
        save_config(cfg, run / "config.yaml")
        (run / "spec.json").write_text(json.dumps({"post_hoc": post_hoc}))
        (run / "results_bbox.json").write_text(json.dumps(perfect))
        if done:
            (run / "run.json").write_text("{}")
    return sweep


def test_scores_the_finished_training_runs_and_compares_score_files(finished_sweep, tmp_path, tiny_shapes):
    scores, out = tmp_path / "scores.npz", tmp_path / "report.json"
    sweep_scoring.main([str(finished_sweep), "--scores", str(scores)])
    sweep_scoring.main([str(finished_sweep), "--against", str(scores), "--out", str(out)])
    report = json.loads(out.read_text())
    entry = report["sweeps"][str(finished_sweep)]
    images = len(json.loads((tiny_shapes / "annotations/val.json").read_text())["images"])
    assert (entry["runs"], entry["bootstrap"], entry["classes"], entry["images"]) == (1, 20, 6, images)
    assert report["largest_difference_from"] == {"file": str(scores), "value": 0.0, "same_missing_values": True}
    kept = np.load(scores)
    kinds = ("full", "draws", "fixed_full", "fixed_draws")  # AP and AP-fixed (the config's k)
    assert sorted(kept.files) == sorted(f"sweep/baseline/seed0/{kind}/{half}" for kind in kinds
                                        for half in ("selection", "confirmation"))
    for name in kept.files:  # every object found first: AP 1 (to COCO's eps) wherever a class has ground truth
        values = kept[name]
        assert np.all(np.isnan(values) | (np.abs(values - 1.0) < 1e-12)) and not np.all(np.isnan(values))


def test_a_folder_without_finished_runs_is_refused(tmp_path):
    (tmp_path / "plan.json").write_text(json.dumps({"test": None, "bootstrap": 20, "split_seed": 0}))
    with pytest.raises(SystemExit, match="no finished training run"):
        sweep_scoring.main([str(tmp_path)])
