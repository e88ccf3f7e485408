"""The efficacy matrix: every remedy, the same data and schedule, several seeds.

    python benchmarks/efficacy/run.py [--datasets shapes fashion] [--seeds 0 1 2] [--iters 400]
        [--seg-iters 1500] [--workers 2] [--only NAME ...] [--no-segmentation]
        [--results benchmarks/efficacy/runs] [--quick]

Each (dataset, entry, seed) trains in its own process (``tools/train.py``) and leaves one
small JSON in ``--results``; an existing JSON is never redone, so a crashed or stopped
matrix continues where it stopped. ``report.py`` turns the JSONs into RESULTS.md.
``--workers``: runs trained at once, the cores split between them (on 2 cores, two
one-thread runs finish 1.7x more runs per hour than one two-thread run: these models are
too small to keep two threads busy). Each invocation that trains adds a line (machine, workers,
wall time) to ``sessions.jsonl`` beside the runs. ``--quick``: a tiny dataset, two entries per
task, one seed, a few iterations (minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks.common import cpu_name  # noqa: E402
from benchmarks.efficacy.matrix import DETECTION, SEGMENTATION, Entry  # noqa: E402
from detimb.data.fashion import DEBIAN_DIR, FashionSpec, make_fashion_dataset  # noqa: E402
from detimb.data.synthetic import ShapesSpec, make_shapes_dataset  # noqa: E402
from detimb.utils import atomic_write_json, atomic_write_text  # noqa: E402


def build_dataset(name: str, root: Path, quick: bool) -> Path:
    """The dataset's folder (built once: annotations/{train,val}.json, train/, val/)."""
    out = root / (f"{name}_quick" if quick else name)
    if (out / "annotations" / "val.json").is_file():
        return out
    if name == "shapes":
        spec = ShapesSpec(train_counts=(40, 20, 10, 6, 4, 2), val_counts=(6, 4, 4, 3, 3, 3), image_size=64,
                          min_object=10, max_object=24) if quick else ShapesSpec()
        make_shapes_dataset(out, spec)
    elif name == "fashion":
        spec_f = FashionSpec(train_counts=(40, 20, 10, 5), val_counts=(5,) * 4, canvas_size=64, min_object=16,
                             max_object=28) if quick else FashionSpec()
        make_fashion_dataset(out, DEBIAN_DIR, spec_f)
    else:
        raise SystemExit(f"unknown dataset {name!r}: shapes or fashion")
    return out


def run_overrides(data: Path, iters: int, quick: bool) -> list[str]:
    """The same data and schedule for every entry (steps at 80% and 95%, as the demo's)."""
    over = [f"data.train.ann_file={data}/annotations/train.json", f"data.train.img_dir={data}/train",
            f"data.val.ann_file={data}/annotations/val.json", f"data.val.img_dir={data}/val",
            f"train.schedule.max_iters={iters}", f"train.schedule.steps=[{int(iters * 0.8)},{int(iters * 0.95)}]",
            f"train.schedule.warmup_iters={min(100, iters // 5)}", f"train.eval_interval={iters}",
            f"train.checkpoint_interval={iters}", f"train.log_interval={max(1, iters // 10)}"]
    if quick:
        over += ["model.transform.min_size=64", "model.transform.max_size=64"]
    return over


def summarise(entry: Entry, report: dict[str, Any]) -> dict[str, Any]:
    """The numbers the report needs from a run's eval.json."""
    if "semantic" in report:
        r = report["semantic"]
        return {"metrics": {k: v for k, v in r["summary"].items()},
                "per_class": {e["name"]: e["dice_global"] for e in r["per_class"][1:]},
                "groups": {e["name"]: e.get("group") for e in r["per_class"][1:]}}
    r = report["bbox"]
    metrics = {"mAP": r["stats"]["mAP"], "AP50": r["stats"]["AP50"], "mAP_macro": r["mAP_macro"], **r["groups"]}
    return {"metrics": metrics, "per_class": {e["name"]: e["AP"] for e in r["per_class"]},
            "groups": {e["name"]: e.get("group") for e in r["per_class"]}}


def run_one(entry: Entry, dataset: str, data: Path, seed: int, iters: int, out: Path, quick: bool,
            threads: int | None = None) -> None:
    env = dict(os.environ)
    if threads is not None:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    with tempfile.TemporaryDirectory(prefix="efficacy_") as tmp:
        cmd = [sys.executable, str(REPO / "tools/train.py"), "--config", str(REPO / entry.config), "--work-dir", tmp,
               "--seed", str(seed), "--no-progress", "--cfg-options", *run_overrides(data, iters, quick),
               *entry.overrides]
        tic = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        seconds = time.perf_counter() - tic
        if proc.returncode != 0:
            raise RuntimeError(f"{entry.name} seed {seed} on {dataset} failed:\n{proc.stderr[-3000:]}")
        report = json.loads((Path(tmp) / "eval.json").read_text())
    atomic_write_json(out, {"entry": entry.name, "family": entry.family, "dataset": dataset, "seed": seed,
                            "iters": iters, "seconds": round(seconds, 1), **summarise(entry, report)}, indent=1)


def log_session(results: Path, record: dict[str, Any]) -> None:
    """One line per invocation in ``sessions.jsonl``: the matrix's wall time and machine, for the report."""
    path = results / "sessions.jsonl"
    before = path.read_text() if path.is_file() else ""
    atomic_write_text(path, before + json.dumps(record) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=["shapes", "fashion"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--iters", type=int, default=400, help="training iterations of every detection run")
    p.add_argument("--seg-iters", type=int, default=1500, help="training iterations of every segmentation run")
    p.add_argument("--workers", type=int, default=1, help="runs trained at once (the cores split between them)")
    p.add_argument("--only", nargs="+", help="entry names to run (default: all)")
    p.add_argument("--no-segmentation", action="store_true")
    p.add_argument("--results", default=str(REPO / "benchmarks/efficacy/runs"))
    p.add_argument("--data-root", default=str(REPO / "data/efficacy"))
    p.add_argument("--quick", action="store_true", help="tiny data, two entries per task, one seed, 6 iterations")
    args = p.parse_args(argv)
    detection, segmentation = list(DETECTION), [] if args.no_segmentation else list(SEGMENTATION)
    if args.quick:
        detection = [e for e in detection if e.name in ("baseline", "repeat_factor")]
        segmentation = [e for e in segmentation if e.name in ("seg_baseline", "seg_class_balanced_patches")]
        args.seeds, args.iters, args.seg_iters = args.seeds[:1], 6, 6
    if args.only:
        detection = [e for e in detection if e.name in args.only]
        segmentation = [e for e in segmentation if e.name in args.only]
    results = Path(args.results)
    # seeds outermost: a stopped matrix has every entry at the first seeds rather than some entries at all
    jobs: list[tuple[Entry, str, int, int]] = []
    for s in args.seeds:
        jobs += [(e, d, s, args.iters) for d in args.datasets for e in detection]
        jobs += [(e, "shapes", s, args.seg_iters) for e in segmentation]
    todo = []
    for entry, dataset, seed, iters in jobs:
        path = results / dataset / entry.name / f"seed{seed}.json"
        if not path.is_file():
            todo.append((entry, dataset, seed, iters))
        elif json.loads(path.read_text())["iters"] != iters:
            raise SystemExit(f"{path} was trained for {json.loads(path.read_text())['iters']} iterations, this"
                             f" matrix asks {iters}: use another --results folder or the same --iters")
    print(f"{len(jobs)} runs, {len(jobs) - len(todo)} already done", flush=True)
    data = {d: build_dataset(d, Path(args.data_root), args.quick) for d in {j[1] for j in todo}}
    workers = max(1, min(args.workers, len(todo)))
    threads = max(1, (os.cpu_count() or 1) // workers) if workers > 1 else None
    tic = time.perf_counter()

    def train(job: tuple[Entry, str, int, int]) -> Path:
        entry, dataset, seed, iters = job
        out = results / dataset / entry.name / f"seed{seed}.json"
        run_one(entry, dataset, data[dataset], seed, iters, out, args.quick, threads)
        return out

    started, trained = datetime.now(timezone.utc), 0
    try:
        with ThreadPoolExecutor(workers) as pool:  # map yields in order; a failed run raises here, the others finish
            for n, out in enumerate(pool.map(train, todo), start=1):
                summary, trained = json.loads(out.read_text()), n
                print(f"[{n}/{len(todo)}] {summary['dataset']} {summary['entry']} seed {summary['seed']}:"
                      f" {summary['metrics']} ({(time.perf_counter() - tic) / 60:.1f} min so far)", flush=True)
    finally:
        if todo and not args.quick:
            log_session(results, {"started": started.isoformat(timespec="seconds"), "cpu": cpu_name(),
                                  "cores": os.cpu_count(), "workers": workers, "threads_per_run": threads,
                                  "iters": args.iters, "seg_iters": args.seg_iters, "runs_trained": trained,
                                  "wall_s": round(time.perf_counter() - tic, 1)})
    if args.quick:
        shutil.rmtree(Path(args.data_root) / "shapes_quick", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
