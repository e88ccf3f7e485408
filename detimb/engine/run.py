"""``train``: a config (file or packaged name) trained into a run folder, as
``tools/train.py`` does. ``detimb.train`` is this."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detimb import distributed
from detimb.config import Overrides, load_config, override_items
from detimb.engine.trainer import Trainer


@dataclass(frozen=True)
class TrainingResult:
    """The run folder, the final evaluation's reports by kind, and its per-class table."""

    work_dir: Path
    reports: dict[str, Any]
    table: str


def default_work_dir(config: str | Path, configured: str | None) -> Path:
    """The config's ``work_dir``, else ``work_dirs/<config name>``."""
    return Path(configured or Path("work_dirs") / Path(str(config)).stem)


def train(config: str | Path, *, work_dir: str | Path | None = None, resume: str | Path | None = None,
          load_from: str | Path | None = None, progress: bool = True, overrides: Overrides = (),
          overwrite: bool = False, device: str | None = None) -> TrainingResult:
    """Train from a config file or packaged name. ``overrides``: ``["key=value", ...]`` (as
    ``--cfg-options``) or ``{"train.schedule.max_iters": 100}``; ``resume``: a checkpoint to
    continue from; ``load_from``: weights to start from (a detimb checkpoint or a torchvision
    state dict); ``overwrite``: replace the run a folder already holds (otherwise refused);
    ``device``: 'cpu', 'cuda', 'cuda:1' (default: CUDA when available)."""
    cfg = load_config(config, override_items(overrides))
    run = Path(work_dir) if work_dir is not None else default_work_dir(config, cfg.work_dir)
    try:
        trainer = Trainer(cfg, run, resume=resume, load_from=load_from, progress=progress, overwrite=overwrite,
                          device=device)
        reports = trainer.train()
        table = trainer.task.evaluator.format(reports) if reports else ""
        return TrainingResult(run, reports, table)
    finally:
        distributed.cleanup()
