"""Two runs in one folder: a second training is refused while the first holds the folder,
a finished run is not replaced without --overwrite, and a stale lock is named and replaced."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from detimb.cli import train as train_cli
from detimb.engine.run_lock import LOCK_NAME, RunLock, check_fresh_folder
from detimb.engine.trainer import Trainer
from detimb.errors import ConfigError, TrainingError


def test_a_second_training_while_the_first_holds_the_folder_is_refused(tiny_config, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_config("faster_rcnn", train={"schedule": {"max_iters": 1}})
    with RunLock(run):  # stands in for a first training, alive in this process
        held = json.loads((run / LOCK_NAME).read_text())
        assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
        with pytest.raises(TrainingError, match=rf"{run} is in use: a training \(process {os.getpid()}"):
            Trainer(cfg, run, progress=False).train()
    assert not (run / LOCK_NAME).exists() and not (run / "last.pth").exists()  # nothing written by the refused one
    Trainer(cfg, run, progress=False).train()  # free again
    assert not (run / LOCK_NAME).exists()


def test_a_stale_lock_is_replaced_and_named(tmp_path, caplog):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(gone.stdout)  # a process that has exited
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": "x"}))
    with caplog.at_level("WARNING", logger="detimb"), RunLock(tmp_path):
        assert json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert f"stale lock (process {pid}" in caplog.text


def test_a_lock_held_on_another_host_is_refused(tmp_path):
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "x"}))
    with pytest.raises(TrainingError, match="process 1 on elsewhere"), RunLock(tmp_path):
        pass
    assert json.loads((tmp_path / LOCK_NAME).read_text())["host"] == "elsewhere"  # not taken over


def test_a_finished_run_is_not_replaced_without_overwrite(tiny_shapes, tmp_path, capsys):
    from tests.conftest import write_config

    config = write_config(tmp_path, tiny_shapes, "faster_rcnn", train={"checkpoint_interval": 1})
    run = tmp_path / "run"
    args = ["--config", str(config), "--work-dir", str(run), "--max-iters", "2", "--no-progress", "--no-eval"]
    assert train_cli.main(args) == 0
    before = (run / "last.pth").read_bytes()
    assert train_cli.main(args) == 2
    assert "holds another run" in capsys.readouterr().err and (run / "last.pth").read_bytes() == before
    assert train_cli.main([*args[:5], "1", *args[6:], "--overwrite"]) == 0  # a shorter run replaces it whole
    assert sorted(p.name for p in run.glob("*.pth")) == ["last.pth"]  # the first run's iter_1 is gone
    assert train_cli.main([*args, "--resume"]) == 0  # resuming is not a new run


def test_check_fresh_folder_without_a_run(tmp_path):
    check_fresh_folder(tmp_path / "new", resuming=False, overwrite=False)  # nothing there: fine
    (tmp_path / "last.pth").write_bytes(b"x")
    with pytest.raises(ConfigError, match="--resume to continue it, --overwrite to replace it"):
        check_fresh_folder(tmp_path, resuming=False, overwrite=False)
