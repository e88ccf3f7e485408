"""Sliced inference over many scenes: one process, torchrun ranks (gloo on the CPU) and Ray
actors, on the same generated GeoTIFFs; scenes per second, and whether every output file
is byte-identical to the one-process run.

The model is the demo detector (``configs/demo/faster_rcnn_shapes.yaml``) after one training
iteration, or ``--checkpoint``. Scenes: ``--scenes`` 3-band uint8 GeoTIFFs of ``--size`` px
(``benchmarks/tiling.py``'s structured pixels), 512 px tiles at overlap 0.2, batch 4. Each
variant is the whole command's wall time (start-up and model loading included), and its
output files are compared byte for byte with the 1-rank, 1-thread run's (processes with
as many threads each: torch's CPU kernels may round the last bit differently with another
thread count, which the 1-process row shows):

- 1 process, all cores as torch threads (what ``detimb-infer`` does alone);
- 1 rank, 1 thread (``torchrun --nproc_per_node 1`` with OMP_NUM_THREADS=1);
- N ranks, 1 thread each (``torchrun --nproc_per_node N``, gloo);
- Ray, N actors of 1 thread on a local Ray (its start-up included).

    python benchmarks/sharded_inference.py [--scenes 8] [--size 2048] [--ranks 2] [--work /tmp/sharded]
        [--out benchmarks/results/sharded_inference_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import cpu_name, shapes_overrides  # noqa: E402
from benchmarks.tiling import make_geotiff  # noqa: E402

OUTPUTS = ("results_bbox.json", "images.json")


def checkpoint(work: Path) -> Path:
    run = work / "model"
    if not (run / "last.pth").is_file():
        cmd = [sys.executable, "-m", "detimb.cli.train", "--config", str(REPO / "configs/demo/faster_rcnn_shapes.yaml"),
               "--work-dir", str(run), "--no-progress", "--no-eval", "--overwrite", "--max-iters", "1",
               "--cfg-options", *shapes_overrides()]
        subprocess.run(cmd, check=True, capture_output=True)
    return run / "last.pth"


def run(name: str, cmd: list[str], env: dict[str, str], out: Path) -> dict:
    start = time.perf_counter()
    done = subprocess.run(cmd, env={**os.environ, "PYTHONPATH": str(REPO), **env}, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{name}: {done.stderr[-3000:]}")
    return {"variant": name, "seconds": round(seconds, 2), "out": str(out)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", type=int, default=8)
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--checkpoint")
    p.add_argument("--work", default="/tmp/sharded_inference")
    p.add_argument("--out", default=str(REPO / "benchmarks/results/sharded_inference_cpu.json"))
    args = p.parse_args()
    work = Path(args.work)
    scenes = work / "scenes"
    scenes.mkdir(parents=True, exist_ok=True)
    make_geotiff(scenes / "scene_0.tif", args.size)
    for i in range(1, args.scenes):
        target = scenes / f"scene_{i}.tif"
        if not target.exists():
            os.link(scenes / "scene_0.tif", target)
    model = Path(args.checkpoint) if args.checkpoint else checkpoint(work)
    common = ["--checkpoint", str(model), "--images", str(scenes), "--tile", "512", "--overlap", "0.2",
              "--batch-size", "4", "--no-progress"]
    infer = ["-m", "detimb.cli.infer"]
    cores = str(os.cpu_count())
    variants = [
        ("1 process, all cores as threads", [sys.executable, *infer], {"OMP_NUM_THREADS": cores}),
        ("torchrun, 1 rank x 1 thread", [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1",
                                         *infer], {"OMP_NUM_THREADS": "1"}),
        (f"torchrun, {args.ranks} ranks x 1 thread (gloo)",
         [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(args.ranks), *infer],
         {"OMP_NUM_THREADS": "1"}),
        (f"ray, {args.ranks} actors x 1 thread", [sys.executable, *infer],
         {"OMP_NUM_THREADS": cores}),
    ]
    rows = []
    for i, (name, cmd, env) in enumerate(variants):
        out = work / f"out_{i}"
        extra = ["--backend", "ray", "--workers", str(args.ranks), "--threads", "1"] if name.startswith("ray") else []
        subprocess.run(["rm", "-rf", str(out)], check=True)  # a fresh folder: nothing resumed
        rows.append(run(name, [*cmd, *common, "--out", str(out), *extra], env, out))
        print(rows[-1], flush=True)
    # the reference runs as many threads per process as the ranks and actors: torch's CPU
    # kernels may round differently with another thread count (the 1-process row shows it)
    reference = Path(rows[1]["out"])
    names = [*OUTPUTS, *sorted(p.name for p in reference.glob("*.geojson"))]
    for row in rows:
        out = Path(row.pop("out"))
        row["scenes_per_s"] = round(args.scenes / row["seconds"], 3)
        row["identical_to_1_rank_1_thread"] = all((out / n).read_bytes() == (reference / n).read_bytes()
                                                  for n in names)
        row["boxes_differing_from_1_rank_1_thread"] = sum(
            a != b for a, b in zip(json.loads((out / OUTPUTS[0]).read_text()),
                                   json.loads((reference / OUTPUTS[0]).read_text())))
    detections = len(json.loads((reference / OUTPUTS[0]).read_text()))
    result = {"benchmark": "sharded_inference", "machine": f"{cpu_name()}, {cores} cores", "scenes": args.scenes,
              "scene_px": args.size, "model": str(args.checkpoint or "demo detector after 1 iteration"),
              "detections": detections, "rows": rows,
              "speedup_ranks_vs_1_rank": round(rows[2]["scenes_per_s"] / rows[1]["scenes_per_s"], 3),
              "speedup_ranks_vs_1_process": round(rows[2]["scenes_per_s"] / rows[0]["scenes_per_s"], 3)}
    print(json.dumps(result, indent=2))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
