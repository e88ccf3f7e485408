"""Two CPU processes with the gloo backend end with identical weights."""

import os
import subprocess
import sys
from pathlib import Path

import torch

from tests.conftest import REPO, write_config


def test_two_gloo_ranks_end_identical(tiny_shapes, tmp_path):
    cfg = write_config(tmp_path, tiny_shapes, "faster_rcnn",
                       train={"schedule": {"max_iters": 3}, "eval_interval": 2, "log_interval": 1})
    work = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(Path(__file__).with_name("ddp_worker.py")), str(cfg), str(work)],
        capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = torch.load(work / "rank0.pth", weights_only=True)
    b = torch.load(work / "rank1.pth", weights_only=True)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    first = torch.load(work / "last.pth", weights_only=True)
    assert first["iteration"] == 3 and len(first["rng"]) == 2
    assert (work / "eval.json").exists()
