"""What a sweep trains: its settings, one run per (remedy, seed), and the record that lets
it resume (and refuse to resume with other settings or other code)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from importlib import metadata
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from detimb.config import config_to_yaml, to_dict
from detimb.errors import DetimbError
from detimb.sweeps.remedies import Fragment, Remedy, flatten
from detimb.utils import atomic_write_json

PLAN_FILE = "plan.json"
CALIBRATION_FOLDER = "calibration"  # the --budget-minutes run, made before the plan
GRID_FOLDER = "grid"  # a post-hoc run's results at each value of its calibration's grid


class SweepError(DetimbError, ValueError):
    """A sweep cannot start or continue: bad settings, a folder of another sweep, changed code."""


def code_version() -> str:
    """detimb's version and, from a git checkout, its commit; uncommitted changes add
    ``.dirty-`` and a hash of the diff, so two different dirty states differ too."""
    try:
        version = metadata.version("detimb")
    except metadata.PackageNotFoundError:
        version = "unknown"
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        diff = subprocess.run(["git", "-C", str(root), "diff", "HEAD", "--", "detimb"], capture_output=True,
                              text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return version
    dirty = f".dirty-{hashlib.sha256(diff.encode()).hexdigest()[:8]}" if diff else ""
    return f"{version}+{commit}{dirty}"


def config_hash(cfg: DictConfig) -> str:
    return hashlib.sha256(config_to_yaml(cfg).encode()).hexdigest()[:16]


@dataclass(frozen=True, kw_only=True)
class SweepSettings:
    """Everything a sweep's results depend on; a resumed sweep must have the same."""

    config: str
    config_hash: str
    overrides: tuple[str, ...]
    remedies: tuple[str, ...]
    seeds: tuple[int, ...]
    iters: int
    split_seed: int
    test: str | None
    test_images: str | None
    objective: str
    bootstrap: int
    code: str
    fragments: dict[str, Fragment] = field(default_factory=dict)  # the user's remedies' (from their files)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "overrides": list(self.overrides), "remedies": list(self.remedies),
                "seeds": list(self.seeds)}


@dataclass(frozen=True)
class Run:
    """One (remedy, seed) run in ``folder`` with the ``overrides`` on the user's config: a
    training run, or (``calibrates`` set: the trained run's folder) a post-hoc remedy's
    scoring of that run's checkpoint."""

    remedy: str
    seed: int
    folder: Path
    overrides: tuple[str, ...]
    calibrates: Path | None = None

    @property
    def key(self) -> str:
        return f"{self.remedy}/seed{self.seed}"

    @property
    def done_file(self) -> Path:
        return self.folder / "run.json"

    @property
    def failed_file(self) -> Path:
        return self.folder / "failed.json"


def grid_folder(run_folder: Path, parameter: str, value: float) -> Path:
    """Where a post-hoc run keeps its results with ``parameter`` = ``value``."""
    return run_folder / GRID_FOLDER / f"{parameter}={value:g}"


def schedule_overrides(base: DictConfig, iters: int) -> list[str]:
    """The user's schedule compressed to ``iters``: warm-up and learning-rate steps at the
    same fractions of training (a 90k-iteration schedule's drops still happen in a short
    run); evaluation only at the end, a checkpoint every quarter for resuming."""
    s = base.train.schedule
    scale = iters / int(s.max_iters)
    steps = sorted({max(1, min(iters - 1, round(int(step) * scale))) for step in s.steps}) if iters > 1 else []
    return [f"train.schedule.max_iters={iters}", f"train.schedule.steps={json.dumps(steps)}",
            f"train.schedule.warmup_iters={min(iters, max(0, round(int(s.warmup_iters) * scale)))}",
            f"train.eval_interval={iters}", f"train.checkpoint_interval={max(1, iters // 4)}"]


def run_overrides(settings: SweepSettings, remedy: Remedy, base: DictConfig, seed: int) -> tuple[str, ...]:
    """The user's overrides, then the remedy's fragment, then the sweep's seed and schedule;
    every validation image evaluated (the sweep scores its own halves of the split, so an
    ``evaluation.max_images`` subset would count the others' objects as missed)."""
    return (*settings.overrides, *flatten(remedy.fragment(base)), f"train.seed={seed}",
            *schedule_overrides(base, settings.iters), "evaluation.max_images=null")


def plan_runs(settings: SweepSettings, remedies: list[Remedy], base: DictConfig, out: Path) -> list[Run]:
    """Every (remedy, seed) run, seeds outermost: a sweep stopped part-way has the first seeds
    of every remedy (each paired with its baseline) rather than every seed of a few remedies.
    A post-hoc remedy's run names the trained run it calibrates."""
    return [Run(r.name, seed, out / "runs" / r.name / f"seed{seed}", run_overrides(settings, r, base, seed),
                None if r.post_hoc is None else out / "runs" / r.post_hoc.after / f"seed{seed}")
            for seed in settings.seeds for r in remedies]


def _value_changes(saved: Any, mine: Any, prefix: str = "") -> list[str]:
    """``key: a there, b now`` for each value of the saved resolved config (plain) that
    ``mine`` (a DictConfig) also holds and differs on. Typed sections are compared key by
    key, so a key only one of them holds (a schema's addition or removal) is not a change;
    a module slot (a free mapping) is one value."""
    if isinstance(mine, DictConfig) and OmegaConf.get_type(mine) is not dict and isinstance(saved, dict):
        return [change for key in sorted(saved.keys() & set(mine.keys()))
                for change in _value_changes(saved[key], mine[key], f"{prefix}{key}.")]
    value = to_dict(mine)
    return [] if saved == value else [f"{prefix.rstrip('.')}: {saved!r} there, {value!r} now"]


def check_folder(out: Path, settings: SweepSettings, base: DictConfig) -> None:
    """Start a new sweep in ``out`` or continue the one there with the same settings (more
    remedies may be added: the finished runs stay, ``check_code`` rules on the new ones);
    refuse a folder of another sweep, of other code, or one that is not a sweep's. The base
    config (``base``) must resolve to the same values as the plan's: a key that only a
    newer or older detimb has does not count (a schema's new option with its default), as
    ``check_code`` keeps runs of other code from being paired."""
    plan = out / PLAN_FILE
    if not plan.is_file():
        if out.exists() and any(p.name != CALIBRATION_FOLDER for p in out.iterdir()):
            raise SweepError(f"--out {out}: not empty and holds no sweep ({PLAN_FILE}). Fix: give a new folder")
        return
    try:
        saved = json.loads(plan.read_text())
    except json.JSONDecodeError as err:
        raise SweepError(f"{plan}: not valid JSON ({err.msg}). Fix: give a new --out") from err
    mine = settings.to_json()
    saved.setdefault("fragments", {})  # a plan written before remedy files
    changed = [k for k in mine if k != "code" and saved.get(k) != mine[k]]
    config_changes = _value_changes(saved["resolved"], base) if "resolved" in saved else None
    if "config_hash" in changed and config_changes == []:
        changed.remove("config_hash")
    if set(changed) <= {"remedies", "fragments"} and set(saved["remedies"]) <= set(mine["remedies"]) and all(
            mine["fragments"].get(name) == fragment for name, fragment in saved["fragments"].items()):
        return
    details = [f"{k}: {saved.get(k)!r} there, {mine[k]!r} now" for k in changed if k != "config_hash"]
    if "config_hash" in changed:
        details.append("the config: " + ", ".join(config_changes[:5]) if config_changes else
                       "the config resolves to other values (a plan without them, by an older detimb)")
    raise SweepError(f"--out {out}: holds another sweep ({'; '.join(details)}). Fix: give a new --out, or the same"
                     " settings to continue it")


def check_code(runs: list[Run], code: str) -> None:
    """Refuse to train new runs beside finished runs of other code: they would be paired.
    When every run is finished, scoring them again with this code pairs nothing new. A
    post-hoc run trains nothing: it scores a finished run's checkpoint, and first checks
    that under this code the checkpoint still gives that run's own results (``worker``)."""
    finished = {json.loads(r.done_file.read_text()).get("code") for r in runs if r.done_file.is_file()}
    pending = [r for r in runs if not r.done_file.is_file() and r.calibrates is None]
    other = sorted(c for c in finished if c != code)
    if pending and other:
        raise SweepError(f"{runs[0].folder.parents[2]}: its finished runs were trained by detimb {', '.join(other)},"
                         f" this is {code}; runs of other code are not paired with new ones. Fix: give a new --out,"
                         " or check out that version to finish the sweep")


def write_plan(out: Path, settings: SweepSettings, base: DictConfig) -> None:
    """The settings and the base config resolved (``check_folder`` compares them)."""
    atomic_write_json(out / PLAN_FILE, {**settings.to_json(), "resolved": to_dict(base)}, indent=2)


def write_spec(run: Run, *, config: str, test: str | None = None, test_images: str | None = None,
               post_hoc: dict[str, str] | None = None) -> None:
    """The run's ``spec.json``, what ``python -m detimb.cli.sweep_worker`` reads: its config,
    overrides, held-out test file and, for a post-hoc run, the calibration and the trained
    run; a previous attempt's failure record is cleared."""
    run.folder.mkdir(parents=True, exist_ok=True)
    run.failed_file.unlink(missing_ok=True)
    atomic_write_json(run.folder / "spec.json", {"config": config, "overrides": list(run.overrides), "test": test,
                                                 "test_images": test_images, "post_hoc": post_hoc}, indent=2)
