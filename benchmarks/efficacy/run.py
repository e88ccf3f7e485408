"""The efficacy matrix through ``detimb-sweep``: every remedy, the same data and schedule, several seeds.

    python benchmarks/efficacy/run.py [--datasets shapes fashion] [--seeds 0 1 2] [--iters 400]
        [--seg-iters 1500] [--workers 2] [--only NAME ...] [--no-segmentation]
        [--results benchmarks/efficacy/sweeps] [--quick]

Detection: per dataset and detector (the demo Faster R-CNN, the demo RetinaNet), one sweep
(``detimb.sweeps.run.sweep``) in ``<results>/<dataset>/<detector>``. Its remedies are the
matrix's entries, each the change its shipped config makes to the demo config
(``matrix.fragment``): a shipped sweep remedy where the entry is one (checked to give the
same config), else a remedy file in ``<results>/<dataset>/remedies/``. The sweep trains,
resumes, records failures and reports (``SWEEP.md``: paired bootstrap intervals, the
verdict on the confirmation half). Segmentation, which the sweep does not score: each
(entry, seed) is a run of the sweep's runner (the same worker, resume and failure record)
in ``<results>/<dataset>/segmentation/``. ``report.py`` writes RESULTS.md from both.
``--quick``: a tiny dataset, three detection entries and two segmentation ones, one seed, six
iterations (minutes).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks.efficacy.matrix import BASES, DETECTION, SEGMENTATION, Entry, fragment, model_type  # noqa: E402
from benchmarks.sweep.run import build, data_overrides  # noqa: E402
from detimb.config import config_to_yaml, load_config  # noqa: E402
from detimb.sweeps.plan import Run, schedule_overrides, write_spec  # noqa: E402
from detimb.sweeps.remedies import REMEDIES, flatten  # noqa: E402
from detimb.sweeps.run import sweep  # noqa: E402
from detimb.sweeps.runner import LocalBackend, Outcome  # noqa: E402
from detimb.utils import atomic_write_text  # noqa: E402

QUICK_DETECTION = ("baseline", "repeat_factor", "iou_balanced")
QUICK_SEGMENTATION = ("seg_baseline", "seg_class_balanced_patches")
QUICK_SIZE = ["model.transform.min_size=64", "model.transform.max_size=64"]


def sweep_remedy(entry: Entry, base: str, overrides: list[str], folder: Path) -> str:
    """The entry as a ``--remedies`` item: ``baseline`` for its detector's demo config, the
    shipped remedy of its name, else a remedy file written to ``folder``."""
    change = fragment(entry)
    if not change:
        return "baseline"
    if entry.name in REMEDIES:
        shipped = load_config(base, overrides + flatten(REMEDIES[entry.name].fragment(load_config(base, overrides))))
        if config_to_yaml(shipped) != config_to_yaml(load_config(base, overrides + flatten(change))):
            raise SystemExit(f"{entry.name}: {entry.config} and the sweep's remedy of that name give different"
                             f" configs (the config changes {flatten(change)}); make them agree")
        return entry.name
    path = folder / f"{entry.name}.yaml"
    atomic_write_text(path, yaml.safe_dump(change, sort_keys=False))
    return str(path)


def detection(dataset: str, data: Path, entries: list[Entry], args: argparse.Namespace, results: Path) -> None:
    """One sweep per detector over ``entries`` on ``dataset``."""
    overrides = data_overrides(data) + (QUICK_SIZE if args.quick else [])
    for detector, base in BASES.items():
        mine = [e for e in entries if model_type(e) == detector]
        if not mine:
            continue
        remedies = [sweep_remedy(e, base, overrides, results / dataset / "remedies") for e in mine]
        print(f"{dataset}, {detector}: {len(remedies)} arms x {len(args.seeds)} seeds", flush=True)
        result = sweep(base, out=results / dataset / detector, remedies=remedies, seeds=args.seeds,
                       iters=args.iters, workers=args.workers, overrides=overrides,
                       bootstrap=50 if args.quick else 1000, progress=not args.no_progress)
        print(result.verdict, flush=True)


def segmentation(dataset: str, data: Path, entries: list[Entry], args: argparse.Namespace, results: Path) -> None:
    """Each (entry, seed) a run of the sweep's runner; a finished one (``run.json``) is kept."""
    extra = data_overrides(data) + (QUICK_SIZE if args.quick else []) + ["evaluation.max_images=null"]
    runs = []
    for seed in args.seeds:
        for e in entries:
            schedule = schedule_overrides(load_config(REPO / e.config), args.seg_iters)
            runs.append(Run(e.name, seed, results / dataset / "segmentation" / e.name / f"seed{seed}",
                            (*extra, *e.overrides, f"train.seed={seed}", *schedule)))
    pending = [r for r in runs if not r.done_file.is_file()]
    configs = {e.name: str(REPO / e.config) for e in entries}
    for run in pending:
        write_spec(run, config=configs[run.remedy])
    bar = tqdm(total=len(runs), initial=len(runs) - len(pending), desc=f"{dataset} segmentation", unit="run",
               disable=args.no_progress)

    def finished(run: Run, outcome: Outcome) -> None:
        bar.update(1)
        if outcome.code:
            print(f"{run.key} failed (exit {outcome.code}): {run.failed_file}", flush=True)

    workers = max(1, min(args.workers, len(pending)))
    LocalBackend(workers=workers, threads=max(1, (os.cpu_count() or 1) // workers)).run_all(pending, finished)
    bar.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["shapes", "fashion"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--iters", type=int, default=400, help="training iterations of every detection run")
    p.add_argument("--seg-iters", type=int, default=1500, help="training iterations of every segmentation run")
    p.add_argument("--workers", type=int, default=2, help="runs trained at once (the cores split between them)")
    p.add_argument("--only", nargs="+", help="entry names to run (default: all; a detector's baseline always runs)")
    p.add_argument("--no-segmentation", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--results", default=str(REPO / "benchmarks/efficacy/sweeps"))
    p.add_argument("--data-root", default=str(REPO / "data/efficacy"))
    p.add_argument("--quick", action="store_true", help="tiny data, a few entries, one seed, 6 iterations")
    args = p.parse_args(argv)
    det, seg = list(DETECTION), [] if args.no_segmentation else list(SEGMENTATION)
    if args.quick:
        det = [e for e in det if e.name in QUICK_DETECTION]
        seg = [e for e in seg if e.name in QUICK_SEGMENTATION]
        args.seeds, args.iters, args.seg_iters = args.seeds[:1], 6, 6
    if args.only:
        unknown = sorted(set(args.only) - {e.name for e in DETECTION + SEGMENTATION})
        if unknown:
            raise SystemExit(f"--only: no entry {', '.join(unknown)} in benchmarks/efficacy/matrix.py")
        det = [e for e in det if e.name in args.only]
        seg = [e for e in seg if e.name in args.only]
    results = Path(args.results)
    for dataset in args.datasets:
        data = build(dataset, Path(args.data_root), args.quick)
        if det:
            detection(dataset, data, det, args, results)
        if seg and dataset == "shapes":  # the segmentation configs are for the shapes masks
            segmentation(dataset, data, seg, args, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
