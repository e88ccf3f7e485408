"""NorCal and AP-fixed on a finished sweep's checkpoints, chosen and scored honestly.

For each remedy and seed of a sweep folder, NorCal's gamma is chosen on the sweep's
selection half of the validation images (``detimb-eval --calibrate norcal``, best ``--metric``,
default mAP), and
the calibrated checkpoint is scored against the uncalibrated one on the confirmation half:
paired by seed, so the figures are NorCal's effect with no image that chose gamma. AP and
AP-fixed are both recorded.

    python benchmarks/norcal_posthoc.py --sweep benchmarks/sweep/shapes --remedies baseline repeat_factor
        [--metric mAP|APr] [--out benchmarks/results/norcal_shapes.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from detimb.data.coco_validate import read_coco_json  # noqa: E402
from detimb.evaluation.run import evaluate  # noqa: E402
from detimb.sweeps.split import split_images  # noqa: E402
from detimb.utils import atomic_write_json  # noqa: E402


def half(coco: dict[str, Any], ids: tuple[int, ...]) -> dict[str, Any]:
    keep = set(ids)
    return {**coco, "images": [im for im in coco["images"] if im["id"] in keep],
            "annotations": [a for a in coco["annotations"] if a["image_id"] in keep]}


def scores(report: dict[str, Any]) -> dict[str, float | None]:
    bbox = report["bbox"]
    fixed = bbox.get("ap_fixed") or {}
    return {"mAP": bbox["stats"]["mAP"], "APr": bbox["groups"]["APr"], "APf": bbox["groups"]["APf"],
            "AP_fixed": fixed.get("mAP"), "APr_fixed": fixed.get("APr")}


T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def paired(diffs: list[float]) -> dict[str, Any]:
    """Differences paired by seed: their mean, a 95% t-interval over the seeds (training
    noise only: the confirmation half is fixed), and the differences themselves."""
    if not diffs:
        return {"mean": None, "ci95": None, "per_seed": []}
    mean = statistics.mean(diffs)
    if len(diffs) < 2:
        return {"mean": mean, "ci95": None, "per_seed": diffs}
    half_width = T_975.get(len(diffs) - 1, 1.96) * statistics.stdev(diffs) / len(diffs) ** 0.5
    return {"mean": mean, "ci95": [mean - half_width, mean + half_width], "per_seed": diffs}


def one_run(run: Path, halves: dict[str, Path], work: Path, metric: str) -> dict[str, Any]:
    config, checkpoint = run / "config.yaml", run / "last.pth"
    on = lambda name: [f"data.val.ann_file={halves[name]}"]  # noqa: E731
    chosen = evaluate(config, checkpoint=checkpoint, out=work / "select", overrides=on("selection"),
                      calibrate="norcal", calibrate_metric=metric)
    gamma = json.loads((chosen.out_dir / "calibration.json").read_text())["best"]
    plain = evaluate(config, checkpoint=checkpoint, out=work / "plain", overrides=on("confirmation"))
    # its own stored config, which names the chosen calibration (the run's config names none)
    calibrated = evaluate(None, checkpoint=work / "select" / "calibrated.pth", out=work / "norcal",
                          overrides=on("confirmation"))
    return {"gamma": gamma, "plain": scores(plain.reports), "norcal": scores(calibrated.reports)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sweep", required=True)
    p.add_argument("--remedies", nargs="+", default=["baseline"])
    p.add_argument("--metric", default="mAP", choices=["mAP", "APr", "APc", "APf", "AP50"],
                   help="what gamma is chosen by on the selection half")
    p.add_argument("--out")
    args = p.parse_args()
    sweep = Path(args.sweep)
    plan = json.loads((sweep / "plan.json").read_text())
    first = next((sweep / "runs").glob("*/seed*/config.yaml"))
    val_file = Path(next(o.split("=", 1)[1] for o in plan["overrides"] if o.startswith("data.val.ann_file=")))
    val = read_coco_json(val_file)
    split = split_images(val, plan["split_seed"])
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        halves = {name: Path(tmp) / f"{name}.json" for name in ("selection", "confirmation")}
        for name, ids in (("selection", split.selection), ("confirmation", split.confirmation)):
            halves[name].write_text(json.dumps(half(val, ids)))
        for remedy in args.remedies:
            for run in sorted((sweep / "runs" / remedy).glob("seed*")):
                results[f"{remedy}/{run.name}"] = one_run(run, halves, Path(tmp) / remedy / run.name, args.metric)
                print(remedy, run.name, results[f"{remedy}/{run.name}"], flush=True)
    summary = {}
    for remedy in args.remedies:
        rows = [v for k, v in results.items() if k.startswith(f"{remedy}/")]
        summary[remedy] = {key: paired([r["norcal"][key] - r["plain"][key] for r in rows
                                        if r["norcal"][key] is not None and r["plain"][key] is not None])
                           for key in ("mAP", "APr", "APf", "AP_fixed", "APr_fixed")}
    atomic_write_json(args.out or REPO / "benchmarks" / "results" / f"norcal_{sweep.name}.json",
                      {"sweep": str(sweep), "config": str(first.parent.parent.parent), "metric": args.metric,
                       "runs": results,
                       "mean_difference_norcal_minus_plain": summary}, indent=2)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
