"""AP, AP-fixed and AP-pool of a finished sweep's runs against its baseline, paired by seed.

Each run's final evaluation (``runs/<remedy>/seed<k>/eval.json``, every validation image)
holds AP beside AP-fixed and AP-pool. This prints and writes each remedy's paired
differences from the baseline with a 95% t-interval over the seeds (training noise only: the
sweep's own report adds the images' bootstrap and scores halves; this is the whole set).

    python benchmarks/sweep/ap_fixed_table.py benchmarks/sweep/shapes_new_remedies [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks.norcal_posthoc import paired  # noqa: E402
from detimb.utils import atomic_write_json  # noqa: E402

METRICS = {"mAP": ("stats", "mAP"), "APr": ("groups", "APr"), "AP-fixed": ("ap_fixed", "mAP"),
           "APr-fixed": ("ap_fixed", "APr"), "AP-pool": ("ap_pool", "mAP"), "APr-pool": ("ap_pool", "APr")}


def scores(eval_json: Path) -> dict[str, float | None]:
    bbox = json.loads(eval_json.read_text())["bbox"]
    return {name: (bbox.get(part) or {}).get(key) for name, (part, key) in METRICS.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sweep")
    p.add_argument("--out")
    args = p.parse_args()
    runs = Path(args.sweep) / "runs"
    table: dict[str, dict[str, Any]] = {}
    base = {r.name: scores(r / "eval.json") for r in sorted((runs / "baseline").glob("seed*"))}
    for remedy in sorted(d.name for d in runs.iterdir() if d.name != "baseline"):
        mine = {r.name: scores(r / "eval.json") for r in sorted((runs / remedy).glob("seed*"))
                if (r / "eval.json").is_file()}
        if not mine:  # a post-hoc remedy's runs write results per value, no eval.json: see its SWEEP.md
            print(f"{remedy}: no eval.json (a post-hoc remedy, or no finished run); left out")
            continue
        table[remedy] = {m: paired([mine[s][m] - base[s][m] for s in mine if s in base
                                    and mine[s][m] is not None and base[s][m] is not None]) for m in METRICS}
    table["baseline (absolute, mean)"] = {m: statistics.mean(v[m] for v in base.values() if v[m] is not None)
                                          for m in METRICS if any(v[m] is not None for v in base.values())}
    for remedy, row in table.items():
        cells = [f"{m} {v['mean']:+.3f} [{v['ci95'][0]:+.3f}, {v['ci95'][1]:+.3f}]" if isinstance(v, dict) else
                 f"{m} {v:.3f}" for m, v in row.items()]
        print(f"{remedy}: " + "; ".join(cells))
    if args.out:
        atomic_write_json(Path(args.out), table, indent=2)


if __name__ == "__main__":
    main()
