"""The training loop: iteration-based, resumable, distributed, evaluated at intervals.

A run folder holds ``config.yaml`` (the resolved config; training from it repeats the
run), ``metrics.jsonl``, ``tensorboard/``, ``last.pth`` and ``best.pth``, and the final
evaluation: for detectors ``eval.json``, ``per_class_ap.csv/png``, ``results_*.json``; for
segmentation ``eval.json``, ``per_class_dice.csv/png``, ``confusion_matrix*.csv/png``.
"""

from __future__ import annotations

import contextlib
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from detimb.config import config_to_yaml, save_config, to_dict
from detimb.data.label_map import LabelMap
from detimb.data.loader import LoaderSettings, build_loader, evaluation_subset_note, position
from detimb import distributed
from detimb.models.weights import load_model_state, load_weights_file
from detimb.visualization.batches import BATCH_PICTURES, write_batch_mosaic
from detimb.engine.checkpoint import (
    clean_stray_temporaries, iteration_checkpoint, load_resume_checkpoint,
    prune_checkpoints, rng_state, save_checkpoint, set_rng_state,
)
from detimb.evaluation.coco_eval import class_frequencies
from detimb.engine.header import run_header, upscale_warning
from detimb.engine.interrupt import StopAtIterationEnd, TrainingInterrupted
from detimb.engine.metrics_log import MetricsLog
from detimb.engine.step_clock import IntervalTimes, StepClock
from detimb.engine.run_lock import RunLock, check_fresh_folder
from detimb.engine.optim import build_optimizer, build_scheduler
from detimb.engine.precision import autocast_dtype, check_finite, with_sync_batchnorm
from detimb.models.priors import apply_priors, optimal_priors
from detimb.engine.tasks import Task, make_task
from detimb.evaluation.evaluators import EvalRequest
from detimb.errors import ConfigError
from detimb.models.heads.objective import HeadObjective
from detimb.utils import atomic_write_json

logger = logging.getLogger(__name__)


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


class Trainer:
    """Builds data, model, optimizer and schedule from ``cfg`` and trains for
    ``cfg.train.schedule.max_iters`` iterations.

    Args:
        cfg: a resolved config (``detimb.config.load_config``).
        work_dir: the run folder.
        resume: a checkpoint to continue from (model, optimizer, scheduler, scaler,
            iteration, random states), or None.
        load_from: a checkpoint whose model weights initialise training from iteration 0.
        progress: show a tqdm bar on rank 0.
        overwrite: start a new run in a folder that holds another (its checkpoints removed);
            without it, such a folder is refused unless resuming.
        device: 'cpu', 'cuda', 'cuda:1' (a single process; default: CUDA when available).
    """

    def __init__(self, cfg: DictConfig, work_dir: str | Path, *, resume: str | Path | None = None,
                 load_from: str | Path | None = None, progress: bool = True, overwrite: bool = False,
                 device: str | torch.device | None = None) -> None:
        self.cfg = cfg
        self.work_dir = Path(work_dir)
        self.progress = progress
        self.rank, self.world, self.device = distributed.setup(device, cfg.train.dist_timeout_minutes)
        if distributed.is_main():
            check_fresh_folder(self.work_dir, resuming=resume is not None, overwrite=overwrite)
        tcfg = cfg.train
        self.amp_dtype = autocast_dtype(tcfg.amp, self.device)
        seed_everything(tcfg.seed, tcfg.deterministic)
        self.task: Task = make_task(cfg)
        self._build_data()
        self.class_stats = self.task.class_statistics(self.train_set, self.label_map, self.train_freq)
        self.model: nn.Module = self.task.build_model(self.label_map, self.class_stats).to(self.device)
        # sampling-free's optimal prior: from the checkpoint on resume, else one counting pass (cached)
        self.priors: dict[str, float] = {} if resume else optimal_priors(
            cfg, self.model, self.train_set, self.label_map.num_classes, progress and distributed.is_main())
        apply_priors(self.model, cfg, self.priors, set_bias=True)
        if load_from:  # a detimb checkpoint or a torchvision state dict; class layers re-initialised if need be
            report = load_weights_file(self.model, load_from, strict_classes=cfg.model.weights_strict)
            if distributed.is_main():
                logger.info(report.summary())
        self.optimizer = build_optimizer(tcfg.optimizer, self.model)
        self.scheduler = build_scheduler(tcfg.schedule, self.optimizer)
        # fp16 needs a loss scale; bf16 has float32's range and does not
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.iteration = 0
        self.best: float | None = None
        self._start(Path(resume) if resume else None)
        self.ddp_model: nn.Module = self.model
        if self.world > 1:
            self.model = with_sync_batchnorm(self.model, self.device) if tcfg.sync_bn else self.model
            self.ddp_model = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=self.task.has_unused_parameters)

    def _build_data(self) -> None:
        """Datasets, their notes, the training set's class frequencies, loaders, hard examples."""
        cfg, seed = self.cfg, self.cfg.train.seed
        self.train_set, self.val_set = self.task.build_datasets(seed, self.progress and distributed.is_main())
        self.label_map: LabelMap = self.train_set.label_map
        self.data_repairs = {split: ds.records.repairs for split, ds in (("train", self.train_set),
                                                                            ("val", self.val_set))}
        if distributed.is_main():
            for ds in (self.train_set, self.val_set):
                for message in ds.records.warnings:
                    logger.warning(message)
            subset = evaluation_subset_note(self.val_set)
            if subset is not None and self.cfg.evaluation.enabled:
                logger.warning(subset)
        self.train_freq = class_frequencies(self.train_set.records.data)
        self.hard_examples = self.task.hard_examples(self.train_set, self.rank, self.world)
        self.loader_settings = LoaderSettings.from_config(cfg.data, self.device)
        # hard example reintroduction changes the dataset between epochs: workers must restart to see it
        self.train_loader = build_loader(self.train_set, batch_size=cfg.data.batch_size,
                                         settings=self.loader_settings, rank=self.rank, world=self.world, seed=seed,
                                         sampler=to_dict(cfg.data.train.sampler),
                                         persistent=self.hard_examples is None)
        self.val_loader = build_loader(self.val_set, batch_size=cfg.data.val_batch_size,
                                       settings=self.loader_settings, rank=self.rank, world=self.world, seed=seed)

    def _start(self, resume: Path | None) -> None:
        """Clear what an interrupted write left, then restore a checkpoint or seed this rank."""
        if distributed.is_main() and self.work_dir.is_dir():
            stray = clean_stray_temporaries(self.work_dir)
            if stray:
                logger.info(f"removed {stray} temporary file(s) an interrupted checkpoint write left in"
                            f" {self.work_dir}")
        if resume is None:
            # Same initial weights on every rank, different sampling draws per rank.
            seed_everything(self.cfg.train.seed + self.rank, self.cfg.train.deterministic)
            return
        state, used, skipped = load_resume_checkpoint(resume)
        for reason in skipped:
            logger.warning(f"{reason}; skipped")
        logger.info(f"resuming from {used} (iteration {state['iteration']})")
        self._restore(state, used)

    # -- state -------------------------------------------------------------------------------
    def _restore(self, state: dict[str, Any], source: Path) -> None:
        saved_map = LabelMap.from_dict(state["label_map"])
        if saved_map != self.label_map:
            raise ConfigError(f"the checkpoint was trained on classes {saved_map.names}, but the config's training"
                              f" set has {self.label_map.names}. Fix: resume with the same data, or use --load-from")
        load_model_state(self.model, state, to_dict(self.cfg.model), self.label_map.num_classes, source)
        self.priors = dict(state.get("priors", {}))
        apply_priors(self.model, self.cfg, self.priors, set_bias=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        elif self.scaler.is_enabled():  # saved without fp16 AMP (CPU, fp32, bf16): the loss scale starts afresh
            logger.info(f"{source} was saved without mixed precision: the AMP loss scale starts afresh")
        self.iteration = int(state["iteration"])
        self.best = state.get("best")
        if hasattr(self.train_set, "load_state_dict"):
            self.train_set.load_state_dict(state.get("data", {}))
        rngs = state["rng"]
        set_rng_state(rngs[self.rank] if self.rank < len(rngs) else rngs[0])

    def checkpoint_state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "priors": self.priors,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "iteration": self.iteration,
            "best": self.best,
            "rng": distributed.all_gather_objects(rng_state()),
            "config": config_to_yaml(self.cfg),
            "label_map": self.label_map.to_dict(),
            "class_statistics": self.class_stats.to_dict(),  # what post-hoc calibration divides by
            "data": self.train_set.state_dict() if hasattr(self.train_set, "state_dict") else {},
        }

    def save(self, name: str) -> None:
        distributed.broadcast_buffers(self.model)
        state = self.checkpoint_state()  # every rank joins the RNG gather
        if distributed.is_main():
            save_checkpoint(self.work_dir / name, state)

    def save_periodic(self) -> None:
        """``iter_N.pth`` (the newest ``train.keep_checkpoints`` kept, for resuming past a torn
        file) and ``last.pth``."""
        self.save(iteration_checkpoint(self.work_dir, self.iteration).name)
        self.save("last.pth")
        if distributed.is_main():
            prune_checkpoints(self.work_dir, self.cfg.train.keep_checkpoints)

    # -- loop --------------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        """Train to ``train.schedule.max_iters``, evaluate, save ``last.pth``; the run folder
        is locked meanwhile (``RunLock``: a second training into it is refused)."""
        with RunLock(self.work_dir) if distributed.is_main() else contextlib.nullcontext():
            return self._train()

    def _train(self) -> dict[str, Any]:
        tcfg = self.cfg.train
        max_iters = tcfg.schedule.max_iters
        if distributed.is_main():
            self.work_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.cfg, self.work_dir / "config.yaml")
            atomic_write_json(self.work_dir / "data_repairs.json", self.data_repairs, indent=2)
        log = MetricsLog(self.work_dir, self.iteration) if distributed.is_main() else None
        bar = tqdm(total=max_iters, initial=self.iteration, desc="train", dynamic_ncols=True, mininterval=1.0,
                   disable=not (self.progress and distributed.is_main()))
        self.ddp_model.train()
        if distributed.is_main():
            logger.info(run_header(self.cfg, self.model, self.train_set.records.data, self.label_map, self.work_dir,
                                   self.iteration))
            upscaled = upscale_warning(self.model.transform, self.train_set.images)
            if upscaled is not None:
                logger.warning(upscaled)
        with StopAtIterationEnd(enabled=self.world == 1) as stop:
            self._loop(max_iters, log, bar, stop)
        bar.close()
        reports = self.evaluate(self.work_dir, log, final=True) if self.cfg.evaluation.enabled else {}
        self.save("last.pth")
        if log is not None:
            log.close()
        return reports

    def _loop(self, max_iters: int, log: MetricsLog | None, bar: tqdm, stop: StopAtIterationEnd) -> None:
        """Iterations until ``max_iters``; a Ctrl-C (``stop``) ends the loop after a whole one."""
        tcfg = self.cfg.train
        clock = StepClock()
        logged = self.iteration
        while self.iteration < max_iters:
            epoch, offset = position(self.train_loader, self.iteration)
            if self.hard_examples is not None:
                self.hard_examples.before_epoch(self.model, epoch, self.device)
            self.train_loader.sampler.set_epoch(epoch)
            self.train_loader.sampler.set_start(offset * self.train_loader.batch_size)
            for images, targets in clock.batches(self.train_loader):
                if self.iteration < BATCH_PICTURES and distributed.is_main():  # what the model is shown, drawn
                    write_batch_mosaic(self.work_dir / "train_batches" / f"iter_{self.iteration + 1}.png", images,
                                       targets, self.label_map, self.cfg.data.ignore_index)
                losses = self.step(images, targets)
                self.iteration += 1
                bar.update(1)
                if self.iteration % tcfg.log_interval == 0 or self.iteration == max_iters:
                    times = clock.lap(self.iteration - logged)
                    logged = self.iteration
                    row = self._log_row(dict(zip(losses, torch.stack(list(losses.values())).tolist())), times)
                    self._report_row(row, times, clock, log, bar)
                final = self.iteration == max_iters
                if not final and self.iteration % tcfg.eval_interval == 0 and self.cfg.evaluation.enabled:
                    self.evaluate(self.work_dir / "eval" / f"iter_{self.iteration:07d}", log)
                if not final and self.iteration % tcfg.checkpoint_interval == 0:
                    self.save_periodic()
                if stop.requested:
                    self._stop_interrupted(log, bar)
                if self.iteration >= max_iters:
                    break

    def _report_row(self, row: dict[str, Any], times: IntervalTimes, clock: StepClock, log: MetricsLog | None,
                    bar: tqdm) -> None:
        """The row to ``metrics.jsonl``, TensorBoard and the progress bar (rank 0), and the
        one warning when the step waits for data."""
        if log is None:
            return
        log.write(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", lr=f"{row['lr']:.2e}", data=f"{times.waiting_fraction:.0%}")
        advice = clock.advice(times, self.iteration, self.loader_settings.num_workers)
        if advice is not None:
            logger.warning(advice)

    def _stop_interrupted(self, log: MetricsLog | None, bar: tqdm) -> None:
        bar.close()
        self.save("last.pth")
        if log is not None:
            log.close()
        raise TrainingInterrupted(f"interrupted after iteration {self.iteration}: saved {self.work_dir / 'last.pth'}."
                                  f" Continue with: detimb-train --config {self.work_dir / 'config.yaml'}"
                                  f" --work-dir {self.work_dir} --resume")

    def step(self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """One optimisation step; the loss terms, detached, left on the device (read back on
        log steps only)."""
        images = [im.to(self.device, non_blocking=True) for im in images]
        targets = [{k: v.to(self.device, non_blocking=True) for k, v in t.items()} for t in targets]
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            losses = self.ddp_model(images, targets)
        values = check_finite(losses, self.iteration + 1)
        loss = sum(losses.values())
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.train.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return dict(zip(losses, values.unbind()))

    def sampling_row(self) -> dict[str, float]:
        """What each head's objective kept and balanced at the last step, under the head's
        name: ``rpn/pos_per_image``, ``roi_heads/neg_mean_iou``, ``roi_heads/pos_frac/<class>``,
        ``roi_heads/raw/loss_classifier``, ..."""
        row: dict[str, float] = {}
        for name, module in self.model.named_modules():
            if not isinstance(module, HeadObjective):
                continue
            name = name.removeprefix("module.").removesuffix(".objective")
            for key, value in module.stats.items():
                if key == "pos_class_frac":
                    row.update({f"{name}/pos_frac/{cls}": float(v) for cls, v in zip(self.label_map.names, value)})
                else:
                    row[f"{name}/{key}"] = float(value)
        return row

    def _log_row(self, losses: dict[str, float], times: IntervalTimes) -> dict[str, Any]:
        hard = dict(self.hard_examples.stats) if self.hard_examples is not None else {}
        losses = {**losses, **self.sampling_row(), **hard}
        if self.world > 1:
            gathered = distributed.all_gather_objects(losses)
            losses = {k: float(np.mean([g[k] for g in gathered])) for k in losses}
        row: dict[str, Any] = {"iter": self.iteration, "lr": self.optimizer.param_groups[0]["lr"],
                               "loss": sum(v for k, v in losses.items() if "/" not in k), **losses,
                               "sec_per_iter": times.sec_per_iter, "data_time": times.data_time}
        if self.device.type == "cuda":
            row["max_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
        return row

    # -- evaluation --------------------------------------------------------------------------
    def evaluate(self, out_dir: Path, log: MetricsLog | None = None, final: bool = False) -> dict[str, Any]:
        distributed.broadcast_buffers(self.model)
        evaluator = self.task.evaluator
        request = EvalRequest(out_dir=out_dir, train_freq=self.train_freq, progress=self.progress,
                              error_analysis=final, samples_dir=self.work_dir / "eval" / "samples" if final else None)
        reports = evaluator.evaluate(self.model, self.val_loader, self.device, self.label_map, request)
        improved = False
        if distributed.is_main():
            flat = evaluator.flat_metrics(reports)
            metric = select_metric(flat, self.cfg.train.best_metric or evaluator.default_metric)
            shown = "  ".join(f"{k} {flat[k]:.3f}" for k in evaluator.headline if flat.get(k) is not None)
            logger.info(f"evaluation at iteration {self.iteration}: {shown}")
            if log is not None:
                log.write({"iter": self.iteration, **flat}, prefix="val")
            improved = metric is not None and (self.best is None or metric > self.best)
            if improved:
                self.best = metric
        improved = distributed.broadcast_object(improved if distributed.is_main() else None)
        self.best = distributed.broadcast_object(self.best)
        if improved:
            self.save("best.pth")
        return reports


def select_metric(flat: dict[str, float | None], name: str) -> float | None:
    if name not in flat:
        raise ConfigError(f"train.best_metric '{name}' is not an evaluation metric; choose from {sorted(flat)}")
    return flat[name]


