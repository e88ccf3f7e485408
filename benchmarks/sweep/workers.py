"""Does ``--workers 2`` on 2 cores give >= 1.6x the runs per hour of ``--workers 1``?

    python benchmarks/sweep/workers.py [--iters 200] [--seeds 0 1] [--out benchmarks/results/sweep_workers.json]

The same sweep (the demo Faster R-CNN on the shapes data, ``seesaw`` against the baseline)
twice, in new folders: one run at a time with every core, then two at a time with the cores
split. Runs per hour = runs / the sweep's training seconds (``sweep.json``); the ratio and
both sweeps' share of time outside training go to ``--out`` (one file per machine measured: the
ratio depends on how much one run gains from a second intra-op thread there).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks.common import cpu_name  # noqa: E402
from benchmarks.sweep.run import CONFIG, build  # noqa: E402
from detimb.sweeps.run import sweep  # noqa: E402
from detimb.utils import atomic_write_json  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "sweep_workers.json")
    args = p.parse_args()
    data = build("shapes", REPO / "data")
    overrides = [f"data.train.ann_file={data}/annotations/train.json", f"data.train.img_dir={data}/train",
                 f"data.val.ann_file={data}/annotations/val.json", f"data.val.img_dir={data}/val"]
    rows = {}
    with tempfile.TemporaryDirectory(prefix="sweep_workers_") as tmp:
        for workers in (1, 2):
            out = Path(tmp) / f"workers{workers}"
            sweep(CONFIG, out=out, remedies=["seesaw"], seeds=args.seeds, iters=args.iters, workers=workers,
                  overrides=overrides, bootstrap=200, progress=False)
            summary = json.loads((out / "sweep.json").read_text())
            runs = len(summary["runs"])
            rows[workers] = {"runs": runs, **summary["seconds"],
                             "runs_per_hour": round(runs / summary["seconds"]["training"] * 3600, 1)}
            print(workers, rows[workers], flush=True)
    ratio = rows[2]["runs_per_hour"] / rows[1]["runs_per_hour"]
    result = {"cpu": cpu_name(), "iters": args.iters, "seeds": args.seeds, "workers": rows,
              "ratio_runs_per_hour": round(ratio, 3)}
    atomic_write_json(args.out, result, indent=2)
    print(f"--workers 2 / --workers 1: {ratio:.2f}x the runs per hour")


if __name__ == "__main__":
    main()
