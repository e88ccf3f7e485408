"""Sliced inference at scale: merging, and the whole path over generated GeoTIFFs.

Merge: 10^3 .. 10^6 synthetic boxes (10-50 px, three classes) spread over a 40,000 px
square scene; greedy NMM by IoS at 0.5, class-aware (``tools/infer.py``'s default merge).
The exhaustive merge (an N x N matrix) runs only where it fits in memory, and where both
run their results are compared.

End to end (``--scenes``): the demo detector (``configs/demo/faster_rcnn_shapes.yaml``; a
trained ``--checkpoint``, or the untrained model, seeded) over generated 3-band uint8
GeoTIFFs (``benchmarks/tiling.py``'s structured pixels, 512 px blocks) of each size, in
512 px tiles at overlap 0.2, batch 4, tiles read ahead by the background reader: tiles per
second, the time the model waited for pixels, detections, and peak RSS, which must be
flat in the scene's size.

Each case runs in its own process, so its peak RSS is its own.

    python benchmarks/sliced_inference.py [--sizes 1000 10000 100000 1000000] [--exhaustive-max 10000]
        [--out benchmarks/results/merge.json]
    python benchmarks/sliced_inference.py --sizes --scenes 10000 20000 40000 [--checkpoint run/last.pth]
        [--work /tmp/sliced_bench] [--e2e-out benchmarks/results/sliced_inference_cpu.json]
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


def e2e_case(size: int, work: Path, checkpoint: str | None) -> dict:
    """Runs in a child process: sliced inference over the generated ``size``^2 scene."""
    import torch

    from benchmarks.common import shapes_overrides
    from benchmarks.tiling import make_geotiff
    from detimb.api import Predictor
    from detimb.config import load_config
    from detimb.data.coco import CocoDetection
    from detimb.engine.sliced import SliceSettings, sliced_predict
    from detimb.models import build_detector

    scene = work / f"scene_{size}.tif"
    make_geotiff(scene, size)
    if checkpoint:
        model = Predictor.from_checkpoint(checkpoint, device="cpu").model
    else:
        cfg = load_config(REPO / "configs/demo/faster_rcnn_shapes.yaml", shapes_overrides())
        torch.manual_seed(0)
        model = build_detector(cfg.model, CocoDetection(cfg.data.train.ann_file, cfg.data.train.img_dir).label_map)
    settings = SliceSettings(size=(512, 512), overlap=0.2, batch_size=4)
    pred = sliced_predict(model, scene, settings, torch.device("cpu"))
    return {"scene_px": size, "tiles": pred["tiles"], "seconds": round(pred["wall_s"], 2),
            "tiles_per_s": round(pred["tiles"] / pred["wall_s"], 2), "wait_s": round(pred["wait_s"], 2),
            "wait_share": round(pred["wait_s"] / pred["wall_s"], 4), "detections": len(pred["boxes"]),
            "threads": torch.get_num_threads(),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def run_scenes(sizes: list[int], work: Path, checkpoint: str | None, out: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in sizes:
        cmd = [sys.executable, __file__, "--e2e-case", str(size), str(work)] + (
            ["--checkpoint", checkpoint] if checkpoint else [])
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"scene {size}: {done.stderr[-3000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
        (work / f"scene_{size}.tif").unlink()
    from benchmarks.common import cpu_name

    result = {"benchmark": "sliced_inference", "machine": cpu_name(), "model": checkpoint or
              "configs/demo/faster_rcnn_shapes.yaml, untrained (seed 0)", "tile": "512 px, overlap 0.2, batch 4",
              "merge": "greedy_nmm ios 0.5, class-aware", "rows": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="*", default=[1000, 10000, 100000, 1000000],
                   help="merge cases: numbers of boxes (none: skip)")
    p.add_argument("--exhaustive-max", type=int, default=10000, help="largest N the N x N merge is run for")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "merge.json"))
    p.add_argument("--scenes", type=int, nargs="*", default=[], help="end to end: GeoTIFF sizes in pixels")
    p.add_argument("--checkpoint", help="end to end: a trained detimb checkpoint (default: the untrained demo)")
    p.add_argument("--work", default="/tmp/sliced_bench", help="end to end: where the scenes are generated")
    p.add_argument("--e2e-out", default=str(REPO / "benchmarks" / "results" / "sliced_inference_cpu.json"))
    p.add_argument("--case", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--e2e-case", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.case:
        print(json.dumps(one_case(int(args.case[0]), args.case[1])))
        return
    if args.e2e_case:
        print(json.dumps(e2e_case(int(args.e2e_case[0]), Path(args.e2e_case[1]), args.checkpoint)))
        return
    if args.scenes:
        run_scenes(args.scenes, Path(args.work), args.checkpoint, Path(args.e2e_out))
    if not args.sizes:
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
