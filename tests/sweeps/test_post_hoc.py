"""A post-hoc remedy in a sweep: NorCal scores the trained runs' checkpoints at every gamma,
keeps the gamma with the best mean objective on the selection half (recomputed here with
pycocotools), is paired with the baseline like a trained remedy, and is recommended with it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from detimb.config import load_config
from detimb.data.coco_validate import read_coco_json
from detimb.evaluation.calibration import GRIDS
from detimb.sweeps.plan import Run, SweepError, check_code
from detimb.sweeps.post_hoc import CalibrationPick, best_value
from detimb.sweeps.run import sweep
from detimb.sweeps.worker import check_reproduces
from detimb.sweeps.split import split_images
from tests.conftest import write_config
from tests.sweeps.test_scoring_and_statistics import pycocotools_per_class


@pytest.fixture(scope="module")
def norcal_sweep(tiny_shapes, tmp_path_factory):
    root = tmp_path_factory.mktemp("norcal")
    # score_thresh 0: a 3-iteration model keeps its low scores, so gamma reorders them
    config = write_config(root, tiny_shapes, model={"roi_head": {"score_thresh": 0.0}})
    sweep(config, out=root / "out", remedies=["repeat_factor_norcal"], seeds=[0, 1], iters=3, workers=2,
          bootstrap=20, objective="mAP", progress=False)
    return tiny_shapes, root / "out"


def test_the_trained_remedy_is_added_and_every_gamma_is_scored(norcal_sweep):
    _, out = norcal_sweep
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["remedies"] == ["baseline", "repeat_factor", "repeat_factor_norcal"]
    assert [c for c in summary["choices"] if c["name"] == "repeat_factor"][0]["reason"] == \
        "calibrated by repeat_factor_norcal"
    assert [r["status"] for r in summary["runs"]] == ["done"] * 6
    parameter, values = GRIDS["norcal"]
    for seed in (0, 1):
        for value in values:
            grid = out / f"runs/repeat_factor_norcal/seed{seed}/grid/{parameter}={value:g}"
            assert (grid / "results_bbox.json").is_file()
    # gamma 0 is the uncalibrated checkpoint: the trained run's own final results
    own = json.loads((out / "runs/repeat_factor/seed0/results_bbox.json").read_text())
    zero = json.loads((out / "runs/repeat_factor_norcal/seed0/grid/gamma=0/results_bbox.json").read_text())
    assert len(zero) == len(own) > 0
    assert [r["score"] for r in zero] == pytest.approx([r["score"] for r in own], abs=1e-5)
    assert set(summary["comparisons"]["selection"]) == {"repeat_factor", "repeat_factor_norcal"}


def test_gamma_is_the_best_mean_map_on_the_selection_half_by_pycocotools(norcal_sweep):
    data_root, out = norcal_sweep
    val = read_coco_json(data_root / "annotations" / "val.json")
    chosen_images = set(split_images(val, 0).selection)
    selection = {**val, "images": [im for im in val["images"] if im["id"] in chosen_images],
                 "annotations": [a for a in val["annotations"] if a["image_id"] in chosen_images]}
    pick = json.loads((out / "sweep.json").read_text())["post_hoc"]["repeat_factor_norcal"]
    parameter, values = GRIDS["norcal"]
    want = []
    for value in values:
        per_seed = []
        for seed in (0, 1):
            results = json.loads((out / f"runs/repeat_factor_norcal/seed{seed}/grid/{parameter}={value:g}"
                                        "/results_bbox.json").read_text())
            per_class = [v for v in pycocotools_per_class(selection, results) if v is not None]
            per_seed.append(float(np.mean(per_class)))
        want.append(float(np.mean(per_seed)))
    assert [t["mAP"] for t in pick["tried"]] == pytest.approx(want, abs=1e-6)
    assert pick["chosen"] == min(v for v, m in zip(values, want) if m == pytest.approx(max(want), abs=1e-12))
    assert f"repeat_factor_norcal: gamma = {pick['chosen']:g}" in (out / "SWEEP.md").read_text()


def test_the_recommended_config_of_a_post_hoc_winner_carries_its_gamma(norcal_sweep, monkeypatch):
    from detimb.sweeps import analysis

    _, out = norcal_sweep
    forced = analysis.Verdict("repeat_factor_norcal", None, "repeat_factor_norcal", "forced")
    monkeypatch.setattr("detimb.sweeps.results.verdict", lambda *a: forced)
    config = json.loads((out / "plan.json").read_text())["config"]
    sweep(config, out=out, remedies=["repeat_factor_norcal"], seeds=[0, 1], iters=3, workers=2, bootstrap=20,
          objective="mAP", progress=False)  # every run done: scored again, nothing trained
    chosen = json.loads((out / "sweep.json").read_text())["post_hoc"]["repeat_factor_norcal"]["chosen"]
    recommended = load_config(out / "recommended.yaml")
    assert dict(recommended.model.roi_head.calibration) == {"type": "norcal", "gamma": chosen}
    assert recommended.data.train.sampler.type == "repeat_factor"


def test_a_tie_keeps_the_least_change_and_no_ground_truth_keeps_the_identity():
    assert best_value(((0.0, 0.3), (0.2, 0.5), (0.4, 0.5))) == 0.2
    assert best_value(((0.0, float("nan")), (0.2, float("nan")))) == 0.0
    pick = CalibrationPick("norcal", "norcal", "gamma", "APr", ((0.0, 0.1), (0.5, float("nan"))), 0.0)
    assert pick.spec == {"type": "norcal", "gamma": 0.0} and "0.5: n/a" in pick.words()
    assert pick.to_json()["tried"][1] == {"gamma": 0.5, "APr": None}


def test_norcal_is_skipped_on_a_model_without_a_roi_head(tiny_shapes, tmp_path):
    retina = write_config(tmp_path, tiny_shapes, "retinanet")
    result = sweep(retina, out=tmp_path / "out", remedies=["norcal", "repeat_factor_norcal"], seeds=[0], iters=2,
                   bootstrap=20, progress=False)
    report = (tmp_path / "out" / "SWEEP.md").read_text()
    assert "**norcal**: model.type retinanet has no model.roi_head" in report
    assert "**repeat_factor_norcal**: model.type retinanet has no model.roi_head" in report
    # nothing calibrates repeat-factor's runs here, so it is not trained for it
    assert json.loads((tmp_path / "out" / "sweep.json").read_text())["remedies"] == ["baseline"]
    assert result.recommended == "baseline"


def test_a_post_hoc_remedy_joins_a_finished_sweep_without_training(norcal_sweep):
    _, out = norcal_sweep
    finished = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/run.json")}
    config = json.loads((out / "plan.json").read_text())["config"]
    sweep(config, out=out, remedies=["repeat_factor_norcal", "norcal"], seeds=[0, 1], iters=3, workers=2,
          bootstrap=20, objective="mAP", progress=False)
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # nothing trained or scored again
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["remedies"] == ["baseline", "repeat_factor", "repeat_factor_norcal", "norcal"]
    assert set(summary["post_hoc"]) == {"repeat_factor_norcal", "norcal"}
    assert (out / "runs/norcal/seed1/grid/gamma=1.5/results_bbox.json").is_file()
    with pytest.raises(SweepError, match="holds another sweep"):  # fewer remedies: another sweep
        sweep(config, out=out, remedies=["norcal"], seeds=[0, 1], iters=3, bootstrap=20, objective="mAP",
              progress=False)


def test_post_hoc_runs_may_join_runs_of_other_code_trained_ones_may_not(tmp_path):
    trained, post = tmp_path / "baseline/seed0", tmp_path / "norcal/seed0"
    trained.mkdir(parents=True)
    (trained / "run.json").write_text(json.dumps({"code": "0.1.0+old"}))
    runs = [Run("baseline", 0, trained, ()), Run("norcal", 0, post, (), calibrates=trained)]
    check_code(runs, "0.1.0+new")
    with pytest.raises(SweepError, match=r"trained by detimb 0.1.0\+old, this is 0.1.0\+new"):
        check_code([*runs, Run("seesaw", 0, tmp_path / "seesaw/seed0", ())], "0.1.0+new")


def test_a_checkpoint_that_no_longer_gives_its_runs_results_is_refused(tmp_path):
    own = [{"image_id": 1, "category_id": 2, "score": 0.9, "bbox": [1.0, 2.0, 3.0, 4.0]},
           {"image_id": 1, "category_id": 2, "score": 0.5, "bbox": [5.0, 6.0, 7.0, 8.0]}]
    (tmp_path / "results_bbox.json").write_text(json.dumps(own))
    check_reproduces(tmp_path, [own[1], {**own[0], "score": 0.90001}])  # another order, float32 noise
    for changed in ([own[0]], [own[0], {**own[1], "score": 0.6}], [own[0], {**own[1], "bbox": [5.0, 6.0, 7.0, 9.0]}]):
        with pytest.raises(SweepError, match="no longer gives the run's own results"):
            check_reproduces(tmp_path, changed)
