"""A tiny sweep end to end: runs, resume after a kill, the report and its files, the Ray
backend against the local one, and bad input refused before anything trains."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import detimb
from detimb.cli import sweep as sweep_cli
from detimb.config import load_config
from detimb.errors import ConfigError
from detimb.sweeps.plan import SweepError
from detimb.sweeps.run import sweep
from detimb.sweeps.timings import TIMINGS_FILE, machine, read_rows
from tests.conftest import REPO, needs_extra, write_config

TINY = dict(remedies=["repeat_factor", "seesaw"], seeds=[0, 1], iters=3, workers=2, bootstrap=50, progress=False)


@pytest.fixture(scope="module")
def tiny_sweep(tiny_shapes, tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    config = write_config(root, tiny_shapes, evaluation={"max_images": 2})  # a subset the sweep must not use
    result = sweep(config, out=root / "out", **TINY)
    return config, root / "out", result


def test_a_sweep_writes_its_report_files_and_a_config_that_trains(tiny_sweep):
    config, out, result = tiny_sweep
    for name in ("SWEEP.md", "sweep.json", "forest.png", "per_class.png", "recommended.yaml", "plan.json"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["remedies"] == ["baseline", "repeat_factor", "seesaw"]
    assert [r["status"] for r in summary["runs"]] == ["done"] * 6
    assert set(summary["comparisons"]["selection"]) == {"repeat_factor", "seesaw"}
    # AP-fixed beside AP in every comparison and in the table
    assert {"APr-fixed", "AP-fixed"} <= set(summary["comparisons"]["confirmation"]["seesaw"]["metrics"])
    assert "ΔAPr-fixed | ΔAP-fixed |" in (out / "SWEEP.md").read_text()
    assert summary["halves"]["selection"] + summary["halves"]["confirmation"] == 10
    assert result.recommended in ("baseline", "repeat_factor", "seesaw") and result.verdict in (out / "SWEEP.md"
                                                                                                ).read_text()
    recommended = load_config(out / "recommended.yaml")  # complete: the user's own schedule, the winner's slots
    assert recommended.train.schedule.max_iters == load_config(config).train.schedule.max_iters
    # each run records the code and its config; the sweep's schedule is compressed into it
    run = json.loads((out / "runs/seesaw/seed1/run.json").read_text())
    assert set(run) == {"code", "config_hash", "seconds", "machine"} and run["machine"] == machine()
    assert summary["trained_on"] == {machine(): 6} and "Trained on" not in (out / "SWEEP.md").read_text()
    # a finished run keeps the one checkpoint the sweep restores (3 iterations wrote iter_N.pth and best.pth)
    assert sorted(p.name for p in (out / "runs/seesaw/seed1").glob("*.pth")) == ["last.pth"]
    trained = load_config(out / "runs/seesaw/seed1/config.yaml")
    assert trained.train.seed == 1 and trained.train.schedule.max_iters == 3
    assert trained.model.roi_head.loss_cls.type == "seesaw"
    assert trained.evaluation.max_images is None  # the sweep scores its halves of every validation image


def test_a_rerun_with_the_same_settings_trains_nothing_and_other_settings_are_refused(tiny_sweep, monkeypatch):
    config, out, _ = tiny_sweep
    from detimb.sweeps import runner

    calls = []
    monkeypatch.setattr(runner, "execute", lambda folder, threads: calls.append(folder))
    sweep(config, out=out, **TINY)
    assert calls == []
    with pytest.raises(SweepError, match=r"holds another sweep \(seeds: \[0, 1\] there, \[0, 1, 2\] now\)"):
        sweep(config, out=out, **{**TINY, "seeds": [0, 1, 2]})


@pytest.mark.slow
def test_killed_mid_way_and_restarted_it_finishes_without_retraining(tiny_shapes, tmp_path):
    config = write_config(tmp_path, tiny_shapes)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "detimb.cli.sweep", "--config", str(config), "--out", str(out), "--remedies",
               "seesaw", "--seeds", "0", "1", "--iters", "3", "--workers", "1", "--bootstrap", "20", "--no-progress"]
    child = subprocess.Popen(command, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (out / TIMINGS_FILE).is_file() and time.time() < deadline:  # written when a run has finished
        time.sleep(0.2)
    os.killpg(child.pid, signal.SIGKILL)  # the sweep and the run it is training
    child.wait()
    finished = {p: p.stat().st_mtime_ns for p in out.glob("runs/*/*/run.json")}
    assert 1 <= len(finished) < 4 and not (out / "sweep.json").exists()
    assert subprocess.run(command, cwd=REPO, capture_output=True).returncode == 0
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # never retrained
    assert len(list(out.glob("runs/*/*/run.json"))) == 4 and (out / "sweep.json").is_file()
    # the killed invocation's time is kept, marked as not concluded, and counted in the report
    killed, resumed = read_rows(out / TIMINGS_FILE)
    assert not killed["concluded"] and killed["training"] > 0 and resumed["concluded"]
    assert "Time over 2 invocation(s), 1 stopped before concluding" in (out / "SWEEP.md").read_text()


@pytest.mark.slow
def test_the_ray_backend_gives_the_local_backends_results(tiny_sweep, tmp_path, monkeypatch):
    ray = needs_extra("ray", "ray")
    config, local_out, _ = tiny_sweep
    monkeypatch.setenv("RAY_worker_niceness", "0")  # Ray's default 15 starves its workers beside other tests
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        sweep(config, out=tmp_path / "ray", backend="ray", **TINY)
    finally:
        ray.shutdown()
    for results in local_out.glob("runs/*/*/results_bbox.json"):
        mine = tmp_path / "ray" / results.relative_to(local_out)
        assert json.loads(mine.read_text()) == json.loads(results.read_text()), results
    a, b = (json.loads((d / "sweep.json").read_text()) for d in (local_out, tmp_path / "ray"))
    assert a["comparisons"] == b["comparisons"] and a["recommended"] == b["recommended"]


def test_bad_input_is_refused_before_anything_trains(tiny_shapes, tmp_path, capsys):
    config = write_config(tmp_path, tiny_shapes)
    assert sweep_cli.main(["--config", str(config), "--out", str(tmp_path / "a"), "--remedies", "seesw"]) == 2
    assert "did you mean 'seesaw'" in capsys.readouterr().err and not (tmp_path / "a").exists()
    (tmp_path / "broken").mkdir()
    broken = write_config(tmp_path / "broken", tiny_shapes, model={"anchors": {"sizes": [[12], [18]]}})
    with pytest.raises(SweepError, match="the base config does not train: model.anchors.sizes has 2 entries"):
        sweep(broken, out=tmp_path / "b", **TINY)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "notes.txt").write_text("mine")
    with pytest.raises(SweepError, match="not empty and holds no sweep"):
        sweep(config, out=tmp_path / "c", **TINY)
    no_fixed = write_config(tmp_path / "c", tiny_shapes, evaluation={"ap_fixed_dets_per_class": 0})
    with pytest.raises(ConfigError, match="APr-fixed: the config sets evaluation.ap_fixed_dets_per_class=0"):
        sweep(no_fixed, out=tmp_path / "f", **{**TINY, "objective": "APr-fixed"})
    assert not (tmp_path / "f").exists()
    with pytest.raises(ConfigError, match="'auto' stands alone"):
        sweep(config, out=tmp_path / "d", **{**TINY, "remedies": ["auto", "seesaw"]})
    retina = write_config(tmp_path, tiny_shapes, "retinanet")
    skipped = sweep(retina, out=tmp_path / "e", **{**TINY, "remedies": ["seesaw"], "seeds": [0], "iters": 2})
    assert "no model.roi_head" in (tmp_path / "e" / "SWEEP.md").read_text()
    assert skipped.recommended == "baseline" and detimb.sweep is sweep


def test_a_failed_run_is_reported_and_the_sweep_goes_on(tiny_shapes, tmp_path, monkeypatch):
    from detimb.sweeps import runner
    from detimb.utils import atomic_write_json

    real = runner.execute

    def flaky(folder: str, threads: int) -> runner.Outcome:
        if folder.endswith("seesaw/seed1"):
            atomic_write_json(Path(folder) / "failed.json", {"code": 3, "error": "Traceback ...\nRuntimeError: boom"})
            return runner.Outcome(3, 0.1, "RuntimeError: boom")
        return real(folder, threads)

    monkeypatch.setattr(runner, "execute", flaky)
    config = write_config(tmp_path, tiny_shapes)
    sweep(config, out=tmp_path / "out", **{**TINY, "remedies": ["seesaw"]})
    summary = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert [r["status"] for r in summary["runs"]] == ["done", "done", "done", "failed"]
    assert summary["comparisons"]["selection"]["seesaw"]["seeds"] == [0]  # paired on the seed both finished
    assert "- seesaw/seed1: exit 3: `RuntimeError: boom`" in (tmp_path / "out" / "SWEEP.md").read_text()


def test_a_held_out_test_file_confirms_instead_of_half_the_validation_set(tiny_shapes, tmp_path):
    config = write_config(tmp_path, tiny_shapes)
    test = tiny_shapes / "annotations" / "val.json"
    sweep(config, out=tmp_path / "out", test=test, test_images=tiny_shapes / "val",
          **{**TINY, "remedies": ["seesaw", "norcal"], "seeds": [0]})
    summary = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert summary["confirmation_source"] == str(test) and summary["halves"] == {"selection": 10, "confirmation": 10}
    assert (tmp_path / "out" / "runs/seesaw/seed0/test/results_bbox.json").is_file()
    # a post-hoc remedy scores the test file at every value too, and is confirmed on it at its choice
    assert (tmp_path / "out" / "runs/norcal/seed0/grid/gamma=0.6/test/results_bbox.json").is_file()
    assert summary["comparisons"]["confirmation"]["norcal"]["seeds"] == [0]
    with pytest.raises(ConfigError, match="--test needs --test-images"):
        sweep(config, out=tmp_path / "other", test=test, **TINY)


@pytest.mark.slow
def test_a_budget_sets_the_iterations_once_and_a_rerun_keeps_them(tiny_shapes, tmp_path):
    config = write_config(tmp_path, tiny_shapes)
    settings = {**TINY, "remedies": ["seesaw"], "seeds": [0], "iters": None, "budget_minutes": 0.2, "workers": 1}
    sweep(config, out=tmp_path / "out", **settings)
    plan = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert plan["iters"] >= 1 and (tmp_path / "out" / "calibration" / "metrics.jsonl").is_file()
    finished = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("runs/*/*/run.json")}
    sweep(config, out=tmp_path / "out", **settings)  # the calibration is reused: same iterations, nothing retrained
    assert {p: p.stat().st_mtime_ns for p in finished} == finished


def test_each_run_is_given_its_share_of_the_cores(monkeypatch, tmp_path):
    """Threads and the loader's ``auto`` workers follow the run's share (DETIMB_CPUS)."""
    import subprocess

    from detimb.sweeps import runner

    seen = {}

    def fake_run(cmd, env, **kwargs):
        seen.update(env)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(runner.subprocess, "run", fake_run)
    assert runner.execute(str(tmp_path), 3).code == 0
    assert seen["DETIMB_CPUS"] == seen["OMP_NUM_THREADS"] == seen["MKL_NUM_THREADS"] == "3"


def test_a_bad_test_file_seed_or_backend_is_refused_before_anything_is_written(tiny_shapes, tmp_path):
    from detimb.errors import DatasetError

    config, images = write_config(tmp_path, tiny_shapes), tiny_shapes / "val"
    val = json.loads((tiny_shapes / "annotations" / "val.json").read_text())
    renamed = {**val, "categories": [{**c, "name": c["name"] + "_x"} if i == 0 else c
                                     for i, c in enumerate(val["categories"])]}
    (tmp_path / "renamed.json").write_text(json.dumps(renamed))
    elsewhere = {**val, "images": [{**im, "file_name": "missing_" + im["file_name"]} for im in val["images"]]}
    (tmp_path / "elsewhere.json").write_text(json.dumps(elsewhere))
    cases = [(tmp_path / "nothing.json", "--test: .*nothing.json"),
             (tmp_path / "renamed.json", r"'square_x'\).* are not the validation set's .*same category ids"),
             (tmp_path / "elsewhere.json", "--test: .*missing_")]
    for n, (test, message) in enumerate(cases):
        with pytest.raises(DatasetError, match=message):
            sweep(config, out=tmp_path / f"out{n}", test=test, test_images=images, **TINY)
        assert not (tmp_path / f"out{n}").exists()
    for bad, message in (({"backend": "dask"}, "--backend: one of local, ray, got 'dask'"),
                         ({"gpus_per_run": -1.0}, "--gpus-per-run must be >= 0")):
        with pytest.raises(ConfigError, match=message):
            sweep(config, out=tmp_path / "neg", **TINY, **bad)
    for seeds, split_seed in (([0, -1], 0), ([0], -3)):
        with pytest.raises(ConfigError, match="integers >= 0"):
            sweep(config, out=tmp_path / "neg", **{**TINY, "seeds": seeds}, split_seed=split_seed)
    assert not (tmp_path / "neg").exists()
