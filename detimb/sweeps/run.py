"""``sweep``: which remedy helps *this* dataset? Each remedy trained on the user's config,
paired by seed with the baseline, chosen on one half of the validation images and
confirmed on the other; ``detimb-sweep``, ``tools/sweep.py`` and ``detimb.sweep`` call it."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from omegaconf import DictConfig
from tqdm import tqdm

from detimb.config import Overrides, load_config, override_items
from detimb.data.coco_validate import validate_coco
from detimb.data.label_map import LabelMap
from detimb.data.statistics import dataset_stats
from detimb.errors import ConfigError
from detimb.evaluation.coco_eval import class_frequencies
from detimb.losses.statistics import ClassStatistics
from detimb.models.builder import build_model
from detimb.sweeps.analysis import FIXED_METRICS, METRICS
from detimb.sweeps.calibration import calibrate
from detimb.sweeps.plan import (
    CALIBRATION_FOLDER, Run, SweepError, SweepSettings, check_code, check_folder, code_version, config_hash,
    plan_runs, write_plan, write_spec,
)
from detimb.sweeps.remedies import MODEL_PARTS, Fragment, Remedy, flatten, remedy
from detimb.sweeps.remedy_files import read_remedies
from detimb.sweeps.results import SweepResult, TrainingSet, conclude, read_test_set
from detimb.sweeps.runner import Backend, LocalBackend, Outcome, RayBackend
from detimb.sweeps.selection import Choice, Profile, choose
from detimb.sweeps.timings import invocation_name, record
from detimb.utils import is_whole_number, usable_cores

logger = logging.getLogger(__name__)
OBJECTIVES = ("auto", *METRICS, *FIXED_METRICS)
BACKENDS = ("local", "ray")


def _training_set(cfg: DictConfig) -> TrainingSet:
    records = validate_coco(cfg.data.train.ann_file, None)
    data = records.data
    freq = class_frequencies(data)
    label_map = LabelMap.from_categories(data["categories"])
    stats = ClassStatistics(tuple(freq[c]["instances"] for c in label_map.coco_ids),
                            tuple(freq[c]["images"] for c in label_map.coco_ids), len(data["images"]))
    profile = Profile.from_stats(dataset_stats(data, tuple(cfg.evaluation.frequency_thresholds)), data)
    return TrainingSet(label_map, stats, freq, profile)


def _candidates(names: Sequence[str], own: dict[str, Fragment], cfg: DictConfig, training: TrainingSet,
                max_remedies: int) -> tuple[list[Remedy], list[Choice]]:
    """The remedies to measure (baseline first) and every one considered, with its reason;
    ``own``: the fragments of the user's remedies among ``names``."""
    if list(names) == ["auto"]:
        choices = choose(training.profile, cfg, max_remedies)
    else:
        if "auto" in names:
            raise ConfigError("--remedies: 'auto' stands alone (or name the remedies)")
        asked = ["baseline"] + [n for n in dict.fromkeys(names) if n != "baseline"]
        found = {n: remedy(n, own) for n in asked}
        needed = {}  # a post-hoc remedy's trained remedy, measured before it when not asked for
        for name, r in list(found.items()):
            if r.post_hoc is not None and r.post_hoc.after not in asked and r.misfit(cfg) is None:
                needed.setdefault(r.post_hoc.after, name)
                found[r.post_hoc.after] = remedy(r.post_hoc.after)
        choices = []
        for name in [*[n for n in asked if found[n].post_hoc is None], *needed,
                     *[n for n in asked if found[n].post_hoc is not None]]:
            misfit = found[name].misfit(cfg)
            reason = f"calibrated by {needed[name]}" if name in needed else "asked for"
            reason += f" ({found[name].summary})" if found[name].own else ""
            choices.append(Choice(name, misfit is None, misfit or reason))
    return [remedy(c.name, own) for c in choices if c.chosen], choices


def _buildable(config: str, overrides: list[str], found: list[Remedy], cfg: DictConfig, training: TrainingSet,
               choices: list[Choice]) -> tuple[list[Remedy], list[Choice]]:
    """Each remedy's config resolved and its model built once; a shipped one that cannot is
    left out with the error; a baseline, or a remedy of the user's own (a mistake in its file,
    more likely than a misfit), that cannot is an error before anything trains."""
    kept, notes = [], {c.name: c for c in choices}
    for r in found:
        try:
            resolved = load_config(config, overrides + flatten(r.fragment(cfg)))
            build_model(resolved.model, training.label_map, training.stats)
        except ConfigError as err:
            if r.name == "baseline":
                raise SweepError(f"--config {config}: the base config does not train: {err}") from err
            if r.own:
                raise SweepError(f"--remedies: your remedy {r.name!r} does not build on --config {config}: {err}."
                                 " Fix: correct its file") from err
            notes[r.name] = Choice(r.name, False, f"does not fit this config: {err}")
            continue
        kept.append(r)
    trained = {r.name for r in kept}
    for r in [r for r in kept if r.post_hoc is not None and r.post_hoc.after not in trained]:
        kept.remove(r)
        notes[r.name] = Choice(r.name, False, f"{r.post_hoc.after}, whose checkpoints it calibrates, does not fit")
    return kept, list(notes.values())


def _backend(name: str, workers: int, threads: int, gpus: float, address: str | None) -> Backend:
    if name == "local":  # the name is one of BACKENDS (_check_arguments)
        return LocalBackend(workers=workers, threads=threads)
    return RayBackend(threads=threads, gpus=gpus, address=address)


def _execute(runs: list[Run], backend: Backend, progress: bool, *,
             after_each: Callable[[], None]) -> list[tuple[Run, Outcome]]:
    """The runs not finished yet: the training runs, then the post-hoc ones (which read the
    trained checkpoints); one progress bar over all of them; ``after_each`` is called after
    each run ends."""
    pending = [r for r in runs if not r.done_file.is_file()]
    outcomes: list[tuple[Run, Outcome]] = []
    bar = tqdm(total=len(runs), initial=len(runs) - len(pending), desc="sweep runs", unit="run", disable=not progress)

    def finished(run: Run, outcome: Outcome) -> None:
        outcomes.append((run, outcome))
        bar.update(1)
        if outcome.code:
            logger.warning(f"{run.key} failed (exit {outcome.code}); the sweep goes on: {run.failed_file}")
        after_each()

    for phase in ([r for r in pending if r.calibrates is None], [r for r in pending if r.calibrates is not None]):
        if phase:
            backend.run_all(phase, finished)
    bar.close()
    return outcomes


def _write_specs(runs: list[Run], settings: SweepSettings) -> None:
    for run in runs:
        post_hoc = remedy(run.remedy, settings.fragments).post_hoc
        write_spec(run, config=settings.config, test=settings.test, test_images=settings.test_images,
                   post_hoc=None if post_hoc is None else {"kind": post_hoc.kind, "trained": str(run.calibrates)})


def _iterations(iters: int | None, budget_minutes: float | None, cfg: DictConfig) -> int | None:
    """Iterations per run: ``iters``, else the config's own; None when ``budget_minutes``
    asks a calibration run to set them."""
    if iters is not None and budget_minutes is not None:
        raise ConfigError("give --iters or --budget-minutes, not both")
    if budget_minutes is not None:
        return None
    if iters is not None and iters < 1:
        raise ConfigError(f"--iters must be >= 1, got {iters}")
    return int(iters) if iters is not None else int(cfg.train.schedule.max_iters)


def sweep(config: str | Path, *, out: str | Path, remedies: Sequence[str | Path] = ("auto",),
          seeds: Sequence[int] = (0, 1, 2), iters: int | None = None, budget_minutes: float | None = None,
          workers: int = 1, backend: str = "local",
          test: str | Path | None = None, test_images: str | Path | None = None, objective: str = "auto",
          bootstrap: int = 1000, max_remedies: int = 6, overrides: Overrides = (), split_seed: int = 0,
          ray_address: str | None = None, gpus_per_run: float = 0.0, cores: int | None = None,
          progress: bool = True) -> SweepResult:
    """Measure remedies on the user's config and write the report and the winning config to
    ``out``. See ``docs/sweep.md`` for every argument."""
    started, invocation = time.perf_counter(), invocation_name()
    items = override_items(overrides)
    _check_arguments(seeds=seeds, split_seed=split_seed, workers=workers, objective=objective, bootstrap=bootstrap,
                     max_remedies=max_remedies, test=test, test_images=test_images, backend=backend,
                     gpus_per_run=gpus_per_run)
    cfg = load_config(config, items)
    if objective in FIXED_METRICS and not cfg.evaluation.ap_fixed_dets_per_class:
        raise ConfigError(f"--objective {objective}: the config sets evaluation.ap_fixed_dets_per_class=0 (AP-fixed"
                          " not computed). Fix: set it (AP-fixed's released k is 10000) or choose another objective")
    if cfg.model.type not in MODEL_PARTS:
        raise ConfigError(f"--config {config}: model.type {cfg.model.type}: the sweep measures detectors"
                          f" ({', '.join(MODEL_PARTS)})")
    training = _training_set(cfg)
    if test is not None:  # before anything trains: the runs predict on it last
        read_test_set(test, validate_coco(cfg.data.val.ann_file, None).data, test_images)
    names, own = read_remedies(list(remedies))
    found, choices = _candidates(names, own, cfg, training, max_remedies)
    found, choices = _buildable(str(config), items, found, cfg, training, choices)
    n_iters = _iterations(iters, budget_minutes, cfg)
    out_dir = Path(out)
    threads = max(1, (cores or usable_cores()) // max(1, workers))
    if n_iters is None:
        n_iters = calibrate(str(config), items, out_dir / CALIBRATION_FOLDER, budget_minutes or 0.0,
                            runs=len(found) * len(seeds), workers=workers, threads=threads)
    settings = SweepSettings(config=str(config), config_hash=config_hash(cfg), overrides=tuple(items),
                             remedies=tuple(r.name for r in found), seeds=tuple(int(s) for s in seeds), iters=n_iters,
                             split_seed=split_seed, test=None if test is None else str(test),
                             test_images=None if test_images is None else str(test_images), objective=objective,
                             bootstrap=bootstrap, code=code_version(),
                             fragments={r.name: own[r.name] for r in found if r.own})
    check_folder(out_dir, settings, cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_plan(out_dir, settings, cfg)
    runs = plan_runs(settings, found, cfg, out_dir)
    check_code(runs, settings.code)
    _write_specs([r for r in runs if not r.done_file.is_file()], settings)
    training_started = time.perf_counter()

    def keep_time() -> None:  # after each finished run: a sweep stopped later keeps the time spent so far
        now = time.perf_counter()
        record(out_dir, invocation, training_s=now - training_started, total_s=now - started, concluded=False)

    _execute(runs, _backend(backend, workers, threads, gpus_per_run, ray_address), progress, after_each=keep_time)
    return conclude(out_dir, settings, cfg, training, runs, choices, invocation=invocation,
                    training_s=time.perf_counter() - training_started, started=started)


def _check_arguments(*, seeds: Sequence[int], split_seed: int, workers: int, objective: str, bootstrap: int,
                     max_remedies: int, test: str | Path | None, test_images: str | Path | None, backend: str,
                     gpus_per_run: float) -> None:
    """Every argument checked before the sweep writes anything."""
    if backend not in BACKENDS:
        raise ConfigError(f"--backend: one of {', '.join(BACKENDS)}, got {backend!r}")
    if not gpus_per_run >= 0:
        raise ConfigError(f"--gpus-per-run must be >= 0 (0: the runs use the CPU), got {gpus_per_run}")
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds: give distinct seeds, got {list(seeds)}")
    if not all(is_whole_number(s, at_least=0) for s in (*seeds, split_seed)):
        raise ConfigError(f"--seeds and --split-seed: integers >= 0 (numpy's generators take no negative seed),"
                          f" got {list(seeds)} and {split_seed!r}")
    if workers < 1 or bootstrap < 10 or max_remedies < 1:
        raise ConfigError("--workers and --max-remedies must be >= 1 and --bootstrap >= 10")
    if objective not in OBJECTIVES:
        raise ConfigError(f"--objective: one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if (test is None) != (test_images is None):
        raise ConfigError("--test needs --test-images (the folder its file names are relative to), and the reverse")
