"""The efficacy runner's --quick path end to end, its resumption, and the report's arithmetic."""

import json

import pytest

from benchmarks.efficacy import report, run
from benchmarks.efficacy.matrix import DETECTION, SEGMENTATION


def test_every_entry_names_a_shipped_config():
    from tests.conftest import REPO

    names = [e.name for e in DETECTION + SEGMENTATION]
    assert len(names) == len(set(names))
    assert all((REPO / e.config).is_file() for e in DETECTION + SEGMENTATION)
    assert all(e.baseline in names for e in DETECTION + SEGMENTATION)
    assert all(e.builds_on in names for e in DETECTION + SEGMENTATION if e.builds_on)


@pytest.mark.slow
def test_quick_matrix_runs_resumes_and_reports(tmp_path, capsys):
    args = ["--quick", "--workers", "2", "--datasets", "shapes", "--results", str(tmp_path / "runs"), "--data-root",
            str(tmp_path / "data")]
    assert run.main(args) == 0
    files = sorted(p.relative_to(tmp_path / "runs").as_posix() for p in (tmp_path / "runs").rglob("*.json"))
    assert files == ["shapes/baseline/seed0.json", "shapes/repeat_factor/seed0.json",
                     "shapes/seg_baseline/seed0.json", "shapes/seg_class_balanced_patches/seed0.json"]
    summary = json.loads((tmp_path / "runs/shapes/baseline/seed0.json").read_text())
    assert {"mAP", "APr", "APc", "APf"} <= set(summary["metrics"]) and len(summary["per_class"]) == 6
    capsys.readouterr()
    assert run.main(args) == 0  # a second call trains nothing
    assert "4 runs, 4 already done" in capsys.readouterr().out
    path = report.write_results(tmp_path / "runs", tmp_path, ["python benchmarks/efficacy/run.py --quick"],
                                ["longer schedule: iters_2500/RESULTS.md"])
    text = path.read_text()
    assert "## Detection on shapes" in text and "## Segmentation on shapes" in text
    assert text.index("**Note**: longer schedule: iters_2500/RESULTS.md") < text.index("## Detection on shapes")
    assert (tmp_path / "detection_shapes.png").stat().st_size > 0


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


def test_runs_of_another_budget_are_not_mixed_in(tmp_path):
    done = tmp_path / "runs" / "shapes" / "baseline" / "seed0.json"
    done.parent.mkdir(parents=True)
    done.write_text(json.dumps({"iters": 99}))
    with pytest.raises(SystemExit, match="trained for 99 iterations"):
        run.main(["--only", "baseline", "--seeds", "0", "--datasets", "shapes", "--no-segmentation", "--iters", "5",
                  "--results", str(tmp_path / "runs"), "--data-root", str(tmp_path / "data")])


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
    def put(entry: str, seed: int, apr: float, apc: float) -> None:
        path = tmp_path / "runs" / "shapes" / entry / f"seed{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"dataset": "shapes", "entry": entry, "seed": seed, "iters": 10, "seconds": 1.0,
                                    "metrics": {"mAP": 0.5, "APr": apr, "APc": apc, "APf": 0.7},
                                    "per_class": {"crescent": apr}, "groups": {"crescent": "rare"}}))

    for seed in (0, 1):
        put("baseline", seed, 0.14, 0.45)
        put("repeat_factor", seed, 0.10, 0.50)
        put("class_aware", seed, 0.05, 0.30)
    text = report.write_results(tmp_path / "runs", tmp_path, ["x"]).read_text()
    assert "- shapes, best for APr: none raised it over the baseline." in text
    assert "- shapes, best for APc: `repeat_factor` (2 seeds)" in text
