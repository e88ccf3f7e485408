"""Merging the predictions of a large scene: the grid-blocked merge against the exhaustive one.

10^3 .. 10^6 synthetic boxes (10-50 px, three classes) spread over a 40,000 px square scene;
greedy NMM by IoS at 0.5, class-aware (``tools/infer.py``'s default merge). Each case runs
in its own process, so its peak RSS is its own; the exhaustive merge (an N x N matrix) runs
only where it fits in memory, and where both run their results are compared.

    python benchmarks/sliced_inference.py [--sizes 1000 10000 100000 1000000] [--exhaustive-max 10000]
        [--out benchmarks/results/merge.json]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def scene(n: int, seed: int = 0):
    import torch

    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 40000
    wh = 10 + torch.rand(n, 2, generator=g) * 40
    return torch.cat([xy, xy + wh], 1), torch.rand(n, generator=g), torch.randint(1, 4, (n,), generator=g)


def one_case(n: int, kind: str) -> dict:
    """Runs in a child process: merge ``n`` boxes with ``kind`` and report time and peak RSS."""
    import torch

    from detimb.engine.merge import merge_predictions, merge_predictions_exhaustive

    torch.set_num_threads(1)
    boxes, scores, labels = scene(n)
    merge = merge_predictions if kind == "blocked" else merge_predictions_exhaustive
    start = time.perf_counter()
    out = merge(boxes, scores, labels, "greedy_nmm", "ios", 0.5)
    seconds = time.perf_counter() - start
    digest = float(out[0].double().sum() + out[1].double().sum())
    return {"boxes": n, "merge": kind, "seconds": round(seconds, 3), "kept": len(out[0]), "digest": digest,
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000, 1000000])
    p.add_argument("--exhaustive-max", type=int, default=10000, help="largest N the N x N merge is run for")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "merge.json"))
    p.add_argument("--case", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.case:
        print(json.dumps(one_case(int(args.case[0]), args.case[1])))
        return
    rows = []
    for n in args.sizes:
        for kind in ("blocked", "exhaustive") if n <= args.exhaustive_max else ("blocked",):
            done = subprocess.run([sys.executable, __file__, "--case", str(n), kind], capture_output=True, text=True,
                                  check=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    for n in args.sizes:
        pair = [r for r in rows if r["boxes"] == n]
        if len(pair) == 2:
            assert pair[0]["kept"] == pair[1]["kept"] and pair[0]["digest"] == pair[1]["digest"], pair
    result = {"benchmark": "merge", "scene_px": 40000, "merge": "greedy_nmm ios 0.5, class-aware", "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
