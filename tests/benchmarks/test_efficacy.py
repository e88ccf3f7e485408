"""The efficacy runner's --quick path end to end through the sweep, its resumption, the
matrix as sweep remedies, and the report's arithmetic."""

import json

import pytest
import yaml

from benchmarks.efficacy import report, run
from benchmarks.efficacy.matrix import BASE_ENTRIES, BASES, DETECTION, SEGMENTATION, fragment, model_type
from detimb.sweeps.plan import SweepError
from detimb.sweeps.remedies import REMEDIES
from detimb.sweeps.remedy_files import read_remedy_file


def test_every_entry_names_a_shipped_config():
    from tests.conftest import REPO

    names = [e.name for e in DETECTION + SEGMENTATION]
    assert len(names) == len(set(names))
    assert all((REPO / e.config).is_file() for e in DETECTION + SEGMENTATION)
    assert all(e.baseline in names for e in DETECTION + SEGMENTATION)
    assert all(e.builds_on in names for e in DETECTION + SEGMENTATION if e.builds_on)


def test_every_detection_entry_is_a_sweep_remedy_on_its_demo_config(tmp_path):
    """Each entry is what its shipped config changes: the base entries nothing; one named as a
    sweep remedy gives that remedy's config; the others valid remedy files."""
    for e in DETECTION:
        detector = model_type(e)
        item = run.sweep_remedy(e, BASES[detector], [], tmp_path)
        if e.name == BASE_ENTRIES[detector]:
            assert item == "baseline" and fragment(e) == {}
        elif e.name in REMEDIES:
            assert item == e.name
        else:
            assert read_remedy_file(item) == (e.name, fragment(e))
    # the entry that once trained the focal loss under its name (a positional argument in the wrong field)
    assert fragment(next(e for e in DETECTION if e.name == "retinanet_ce")) == {
        "model": {"retina_head": {"loss_cls": {"type": "binary_cross_entropy"}}}}


@pytest.mark.slow
def test_quick_matrix_runs_resumes_and_reports(tmp_path, capsys):
    args = ["--quick", "--workers", "2", "--datasets", "shapes", "--results", str(tmp_path / "runs"), "--data-root",
            str(tmp_path / "data"), "--no-progress"]
    assert run.main(args) == 0
    done = sorted(p.parent.relative_to(tmp_path / "runs").as_posix() for p in (tmp_path / "runs").rglob("run.json"))
    assert done == ["shapes/faster_rcnn/runs/baseline/seed0", "shapes/faster_rcnn/runs/iou_balanced/seed0",
                    "shapes/faster_rcnn/runs/repeat_factor/seed0", "shapes/segmentation/seg_baseline/seed0",
                    "shapes/segmentation/seg_class_balanced_patches/seed0"]
    assert (tmp_path / "runs/shapes/faster_rcnn/SWEEP.md").is_file()
    assert (tmp_path / "runs/shapes/remedies/iou_balanced.yaml").is_file()  # not a shipped remedy: a file
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs").rglob("run.json")}
    assert run.main(args) == 0  # a second call trains nothing
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    with pytest.raises(SweepError, match="holds another sweep"):  # runs of other settings are not mixed in
        run.main([*args, "--seeds", "5"])
    runs = report.load([tmp_path / "runs"])["shapes_quick"]  # the dataset: its folder's name
    assert set(runs) == {"baseline", "iou_balanced", "repeat_factor", "seg_baseline",
                                   "seg_class_balanced_patches"}
    assert {"mAP", "APr", "APc", "APf"} <= set(runs["baseline"][0]["metrics"])
    assert runs["baseline"][0]["iters"] == 6 and len(runs["baseline"][0]["per_class"]) == 6
    path = report.write_results([tmp_path / "runs"], tmp_path, ["python benchmarks/efficacy/run.py --quick"],
                                ["longer schedule: iters_2500/RESULTS.md"])
    text = path.read_text()
    assert "## Detection on shapes_quick" in text and "## Segmentation on shapes_quick" in text
    assert text.index("**Note**: longer schedule: iters_2500/RESULTS.md") < text.index("## Detection on shapes")
    assert "[faster_rcnn](runs/shapes/faster_rcnn/SWEEP.md)" in text
    assert (tmp_path / "detection_shapes_quick.png").stat().st_size > 0


def test_differences_are_paired_by_seed_and_verdicts_need_the_spread():
    runs = {"baseline": {0: {"metrics": {"APr": 0.10}}, 1: {"metrics": {"APr": 0.30}}, 2: {"metrics": {"APr": 0.2}}},
            "x": {0: {"metrics": {"APr": 0.15}}, 1: {"metrics": {"APr": 0.35}}, 2: {"metrics": {"APr": 0.25}},
                  3: {"metrics": {"APr": 0.9}}}}
    mean, std, n = report.difference(runs, "x", "baseline", "APr")
    assert (mean, std, n) == (pytest.approx(0.05), pytest.approx(0.0, abs=1e-12), 3)  # seed 3 has no pair
    assert report.verdict((0.05, 0.01, 3)) == "reproduced"
    assert report.verdict((0.05, 0.08, 3)) == "same direction, within the spread"
    assert report.verdict((-0.01, 0.001, 3)) == "not reproduced"
    assert report.verdict((0.002, 0.0004, 3)) == "reproduced, but under 0.005"  # consistent, too small to act on
    assert report.verdict((0.0049, 0.001, 3)) == "reproduced"  # printed as +0.005: judged as printed


def test_a_claim_to_match_fails_only_when_clearly_below():
    assert report.verdict((0.003, 0.004, 3), "matches") == "reproduced"
    assert report.verdict((-0.006, 0.010, 3), "matches") == "reproduced: below by less than the spread"
    assert report.verdict((-0.011, 0.009, 3), "matches") == "not reproduced: below by more than the spread"
    assert report.verdict((-0.011, 0.009, 3)) == "not reproduced"  # the same numbers against a claim to raise


def test_a_metric_both_runs_score_zero_on_is_not_a_verdict():
    zero = {"metrics": {"APr": 0.0}}
    runs = {"baseline": {0: zero, 1: zero}, "x": {0: zero, 1: zero}, "y": {0: zero, 1: {"metrics": {"APr": 0.2}}}}
    assert report.at_floor(runs, "x", "baseline", "APr")
    assert not report.at_floor(runs, "y", "baseline", "APr")
    assert not report.at_floor(runs, "missing", "baseline", "APr")  # no paired seed: nothing to say


def test_a_best_remedy_line_shows_what_the_tail_gain_cost_the_head():
    def r(apr: float, apf: float) -> dict:
        return {"metrics": {"mAP": (apr + apf) / 2, "APr": apr, "APc": 0.0, "APf": apf}}

    runs = {"baseline": {0: r(0.0, 0.5), 1: r(0.1, 0.5)}, "class_aware": {0: r(0.2, 0.4), 1: r(0.3, 0.3)}}
    line = report.tradeoff(runs, "class_aware", report.DET_COLUMNS)
    # by hand: APr +0.2 both seeds; APf -0.1 and -0.2 -> mean -0.15, sample std 0.0707; mAP +0.05 and +0.0
    assert line == "mAP +0.025 ± 0.035, APr +0.200 ± 0.000, APc +0.000 ± 0.000, APf -0.150 ± 0.071"
    # against another entry (a combination over its part): the same pairs, the other way round
    back = report.tradeoff(runs, "baseline", ("APr", "APf"), base="class_aware")
    assert back == "APr -0.200 ± 0.000, APf +0.150 ± 0.071"


def test_an_apc_gain_is_not_hidden_behind_the_same_entrys_apr_loss(tmp_path):
    # at 2500 iterations repeat_factor was best on both columns yet lowered APr: it must get an APc line
    def put(entry: str, seed: int, apr: float, apc: float) -> None:  # a finished sweep run's files
        folder = tmp_path / "runs" / "shapes" / "faster_rcnn" / "runs" / entry / f"seed{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "run.json").write_text(json.dumps({"code": "x", "config_hash": "y", "seconds": 1.0}))
        (folder / "config.yaml").write_text(yaml.safe_dump({
            "model": {"type": "faster_rcnn"}, "data": {"train": {"ann_file": "/d/shapes/annotations/train.json"}},
            "train": {"seed": seed, "schedule": {"max_iters": 10}}}))
        (folder / "eval.json").write_text(json.dumps({"bbox": {
            "stats": {"mAP": 0.5, "AP50": 0.7}, "mAP_macro": 0.5, "groups": {"APr": apr, "APc": apc, "APf": 0.7},
            "per_class": [{"name": "crescent", "AP": apr, "group": "rare"}]}}))

    for seed in (0, 1):
        put("baseline", seed, 0.14, 0.45)
        put("repeat_factor", seed, 0.10, 0.50)
        put("class_aware", seed, 0.05, 0.30)
    text = report.write_results([tmp_path / "runs"], tmp_path, ["x"]).read_text()
    assert "- shapes, best for APr: none raised it over the baseline." in text
    assert "- shapes, best for APc: `repeat_factor` (2 seeds)" in text


def _sweep_run(sweep, remedy: str, seed: int, *, model: str = "faster_rcnn", iters: int = 10, apr: float = 0.1):
    """A finished run of a sweep in folder ``sweep`` (its plan.json beside runs/)."""
    folder = sweep / "runs" / remedy / f"seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    (sweep / "plan.json").write_text("{}")
    (folder / "run.json").write_text(json.dumps({"code": "x", "config_hash": "y", "seconds": 2.0}))
    (folder / "config.yaml").write_text(yaml.safe_dump({
        "model": {"type": model}, "data": {"train": {"ann_file": "/d/fashion/annotations/train.json"}},
        "train": {"seed": seed, "schedule": {"max_iters": iters}}}))
    (folder / "eval.json").write_text(json.dumps({"bbox": {
        "stats": {"mAP": 0.3, "AP50": 0.5}, "mAP_macro": 0.3, "groups": {"APr": apr, "APc": 0.2, "APf": 0.4},
        "per_class": [{"name": "bag", "AP": apr, "group": "rare"}]}}))
    return folder


def test_the_report_joins_sweeps_pairs_their_baselines_and_refuses_what_would_mix(tmp_path):
    _sweep_run(tmp_path / "a", "baseline", 0)
    _sweep_run(tmp_path / "a", "seesaw", 0, apr=0.3)
    _sweep_run(tmp_path / "b", "baseline", 0)  # the same deterministic baseline in another sweep
    _sweep_run(tmp_path / "b", "copy_paste", 0, apr=0.5)
    _sweep_run(tmp_path / "r", "baseline", 0, model="retinanet")  # a RetinaNet sweep's baseline: focal
    _sweep_run(tmp_path / "r", "ghm", 0, model="retinanet")
    (_sweep_run(tmp_path / "b", "norcal", 0) / "eval.json").unlink()  # post-hoc: results per gamma, no eval.json
    runs = report.load([tmp_path / "a", tmp_path / "b", tmp_path / "r"])["fashion"]
    assert set(runs) == {"baseline", "seesaw", "copy_paste", "retinanet_focal", "ghm"}
    assert report.difference(runs, "copy_paste", "baseline", "APr")[0] == pytest.approx(0.4)
    _sweep_run(tmp_path / "c", "baseline", 0, apr=0.15)  # a baseline with other results
    with pytest.raises(SystemExit, match="baseline seed 0 on fashion with other results"):
        report.load([tmp_path / "a", tmp_path / "c"])
    _sweep_run(tmp_path / "d", "seesaw", 1, iters=400)
    with pytest.raises(SystemExit, match=r"detection runs of \[10, 400\] iterations"):
        report.load([tmp_path / "a", tmp_path / "d"])


def test_the_bar_panel_rows_line_up_with_the_heat_map_rows(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    drawn = []
    monkeypatch.setattr(plt, "close", drawn.append)
    seeds = {s: {"metrics": {"APr": 0.1 * s}, "per_class": {"bag": 0.1 * s, "coat": 0.5}} for s in range(2)}
    runs = {"baseline": seeds, "class_aware": seeds, "seesaw": seeds}  # the baseline has no bar
    report.plot(runs, list(runs), ["coat", "bag"], "APr", "AP", tmp_path / "p.png")
    heat, bars = drawn[0].axes
    # row i of either panel is at y = i, the first row on top
    assert heat.get_ylim() == bars.get_ylim() == (2.5, -0.5)
    assert sorted(p.get_y() + p.get_height() / 2 for p in bars.patches) == [0.0, 1.0, 2.0]
    assert (tmp_path / "p.png").stat().st_size > 0
