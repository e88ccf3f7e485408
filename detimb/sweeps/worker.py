"""One sweep run, in its own process (``python -m detimb.cli.sweep_worker RUN_FOLDER``).

The folder's ``spec.json`` names the config, the overrides and the held-out test file;
the run trains (resuming from its ``last.pth`` after an interruption), scores the test
file when there is one, and writes ``run.json`` (code version, config hash, seconds) last,
so a run without it is not finished. The local pool and Ray's tasks both start this.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from detimb.config import load_config
from detimb.engine.run import train
from detimb.evaluation.run import evaluate
from detimb.sweeps.plan import code_version, config_hash
from detimb.utils import atomic_write_json

TEST_FOLDER = "test"


def run_one(folder: Path) -> None:
    spec = json.loads((folder / "spec.json").read_text())
    start = time.perf_counter()
    last = folder / "last.pth"
    train(spec["config"], work_dir=folder, overrides=spec["overrides"], progress=False,
          resume=last if last.is_file() else None)
    if spec.get("test"):
        evaluate(folder / "config.yaml", checkpoint=folder / "last.pth", out=folder / TEST_FOLDER,
                 overrides=[f"data.val.ann_file={spec['test']}", f"data.val.img_dir={spec['test_images']}"])
    cfg = load_config(folder / "config.yaml")
    atomic_write_json(folder / "run.json", {"code": code_version(), "config_hash": config_hash(cfg),
                                            "seconds": round(time.perf_counter() - start, 1)}, indent=2)
