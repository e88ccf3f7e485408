"""The sweep's scoring time: every finished training run of a finished sweep scored again on
its selection and confirmation halves and their bootstrap draws, as ``detimb-sweep`` does
when it concludes (``analysis.score_results``: COCO matching once, then AP and AP-fixed for
each draw).

    python benchmarks/sweep_scoring.py SWEEP_FOLDER [SWEEP_FOLDER ...] [--runs 6]
        [--out benchmarks/results/sweep_scoring.json] [--scores scores.npz] [--against other.npz]

Seconds per run, per sweep. ``--scores`` keeps every score array; ``--against`` gives the
largest difference from arrays another checkout of the code kept (the same runs), so a
faster scoring is shown to give the same numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import cpu_name  # noqa: E402
from detimb.config import load_config  # noqa: E402
from detimb.sweeps.analysis import RunScores, score_results  # noqa: E402
from detimb.sweeps.results import scoring_halves  # noqa: E402
from detimb.sweeps.worker import read_results  # noqa: E402
from detimb.utils import atomic_write_json  # noqa: E402


def trained_runs(sweep: Path) -> list[Path]:
    """The sweep's finished training runs (post-hoc runs score other runs' checkpoints)."""
    return sorted(spec.parent for spec in sweep.glob("runs/*/seed*/spec.json")
                  if (spec.parent / "run.json").is_file() and not json.loads(spec.read_text()).get("post_hoc"))


def arrays(scores: RunScores) -> dict[str, np.ndarray]:
    return {f"{kind}/{half}": values for kind, by_half in (("full", scores.full), ("draws", scores.draws),
                                                            ("fixed_full", scores.fixed_full),
                                                            ("fixed_draws", scores.fixed_draws))
            for half, values in by_half.items()}


def score_sweep(sweep: Path, runs: int) -> tuple[dict, dict[str, np.ndarray]]:
    plan = json.loads((sweep / "plan.json").read_text())
    if plan.get("test"):
        raise SystemExit(f"{sweep}: a sweep with a held-out test file; this benchmark scores validation halves")
    folders = trained_runs(sweep)[:runs]
    if not folders:
        raise SystemExit(f"{sweep}: no finished training run. Fix: give a sweep folder whose runs have run.json")
    cfg = load_config(folders[0] / "config.yaml")
    gt, _, _, halves, _ = scoring_halves(cfg, test=None, bootstrap=plan["bootstrap"],
                                         split_seed=plan["split_seed"])
    fixed_k = int(cfg.evaluation.ap_fixed_dets_per_class) or None
    seconds, detections, kept = [], [], {}
    for folder in folders:
        results = read_results(folder)
        start = time.perf_counter()
        scores = score_results(results, gt, halves, fixed_k)
        seconds.append(time.perf_counter() - start)
        detections.append(len(results))
        name = f"{sweep.name}/{folder.parent.name}/{folder.name}"
        kept.update({f"{name}/{key}": value for key, value in arrays(scores).items()})
    return {"runs": len(folders), "images": len(gt.getImgIds()), "classes": len(gt.getCatIds()),
            "bootstrap": plan["bootstrap"], "detections_per_run": round(float(np.mean(detections))),
            "seconds_per_run": round(float(np.mean(seconds)), 2), "seconds": [round(s, 2) for s in seconds]}, kept


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweeps", nargs="+", type=Path)
    parser.add_argument("--runs", type=int, default=6, help="finished training runs scored per sweep")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--scores", type=Path, default=None, help="keep every score array here (.npz)")
    parser.add_argument("--against", type=Path, default=None, help="another checkout's --scores file")
    args = parser.parse_args(argv)
    report, kept = {"cpu": cpu_name(), "sweeps": {}}, {}
    for sweep in args.sweeps:
        report["sweeps"][str(sweep)], arrays_of_sweep = score_sweep(sweep, args.runs)
        kept.update(arrays_of_sweep)
        print(sweep, report["sweeps"][str(sweep)]["seconds_per_run"], "s per run", flush=True)
    if args.against is not None:
        other = np.load(args.against)
        if set(other.files) != set(kept):
            raise SystemExit(f"{args.against}: scores of other runs or halves than these. Fix: score the same sweep"
                             " folders with the same --runs")
        report["largest_difference_from"] = {"file": str(args.against), "value": max(
            float(np.nanmax(np.abs(kept[k] - other[k]), initial=0.0)) for k in kept)}
        same_nan = all(np.array_equal(np.isnan(kept[k]), np.isnan(other[k])) for k in kept)
        report["largest_difference_from"]["same_missing_values"] = same_nan
        print("largest difference:", report["largest_difference_from"])
    if args.scores is not None:
        np.savez_compressed(args.scores, **kept)
    if args.out is not None:
        atomic_write_json(args.out, report, indent=2)


if __name__ == "__main__":
    main()
