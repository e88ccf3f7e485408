"""The training loader against the decode limit, the wait a fixed-cost step sees, the
decoded-image cache, and what ``num_workers: auto`` should be when the step runs on the CPU.

Data: ``--images`` 1024 px PNG training images cut from real aerial texture (deepforest's
2299 x 2472 crop, mirror-tiled as ``benchmarks/tiling.py`` does; ``--deepforest`` is the
folder of the deepforest wheel's ``deepforest/data``, fetched with ``pip download --no-deps
deepforest==2.1.0``), 20 random boxes each; horizontal flip and brightness/contrast
augmentation; batches of 8. Measured on this machine's cores:

1. the limit: a bare OpenCV decode loop (``cv2.imread`` + BGR->RGB, one thread per core,
   OpenCV releases the GIL), images/s;
2. the loader (``build_loader``, workers as ``auto`` resolves them for an accelerator),
   images/s over epochs 2-4 (persistent workers, after start-up), against the limit (both
   the median of 3 alternating trials);
3. the share of wall time a simulated model step of fixed cost (a 40 ms sleep per batch of
   8, a GPU step's stand-in) waits for data: ``num_workers`` 0 (the old default) and auto,
   without and with ``data.cache: ram`` (its second run);
4. the cache: two consecutive runs (a new loader each, one epoch, the simulated step): the
   second run's data time per batch without the cache and with it;
5. ``auto`` on the CPU: the demo detector (``configs/demo/faster_rcnn_shapes.yaml``)
   trained 60 iterations with 0, 1 and 2 workers, s/iteration over iterations 21-60.

    python benchmarks/loader.py --deepforest DIR [--images 48] [--work /tmp/loader_bench]
        [--out benchmarks/results/loader_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import cpu_name, shapes_overrides  # noqa: E402
from benchmarks.tiling import mirror_tiled  # noqa: E402
from detimb.data.loader import LoaderSettings, build_datasets, build_loader, resolve_num_workers  # noqa: E402
from detimb.engine.step_clock import StepClock  # noqa: E402

TEXTURE = "2019_YELL_2_528000_4978000_image_crop2.png"
SIZE, BATCH, STEP_S = 1024, 8, 0.040
TRANSFORMS = [{"type": "HorizontalFlip", "p": 0.5}, {"type": "RandomBrightnessContrast", "p": 0.5}]


def make_images(folder: Path, texture: Path, count: int) -> Path:
    """``count`` 1024 px crops of the mirror-tiled texture, with 20 random boxes each."""
    ann = folder / "train.json"
    if ann.is_file():
        return ann
    (folder / "images").mkdir(parents=True, exist_ok=True)
    big = mirror_tiled(cv2.imread(str(texture), cv2.IMREAD_COLOR), 4 * SIZE)
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for i in range(count):
        y0, x0 = rng.integers(0, 3 * SIZE, 2)
        cv2.imwrite(str(folder / "images" / f"{i:04d}.png"), big[y0:y0 + SIZE, x0:x0 + SIZE])
        images.append({"id": i + 1, "file_name": f"{i:04d}.png", "width": SIZE, "height": SIZE})
        for _ in range(20):
            x, y = rng.uniform(0, SIZE - 64, 2)
            w, h = rng.uniform(16, 64, 2)
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": 1,
                                "bbox": [float(x), float(y), float(w), float(h)], "area": float(w * h), "iscrowd": 0})
    ann.write_text(json.dumps({"images": images, "annotations": annotations,
                               "categories": [{"id": 1, "name": "tree"}]}))
    return ann


def decode_limit(folder: Path, epochs: int = 3) -> float:
    """Images/s of ``epochs`` passes over the images."""
    files = sorted((folder / "images").glob("*.png"))

    def read(path: Path) -> np.ndarray:
        return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    with ThreadPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(read, files[:4]))
        start = time.perf_counter()
        for _ in range(epochs):
            list(pool.map(read, files))
    return epochs * len(files) / (time.perf_counter() - start)


def data_cfg(folder: Path, cache: str | None) -> OmegaConf:
    split = {"ann_file": str(folder / "train.json"), "img_dir": str(folder / "images"), "keep_empty": True,
             "out_of_bounds": "clip"}
    return OmegaConf.create({"train": {**split, "transforms": TRANSFORMS}, "val": {**split, "transforms": []},
                             "check_images": False, "cache": cache, "cache_dir": None, "cache_max_gb": 32.0})


def loader_for(folder: Path, workers: int, cache: str | None):
    train, _ = build_datasets(data_cfg(folder, cache), False, seed=0)
    return build_loader(train, batch_size=BATCH, settings=LoaderSettings(num_workers=workers), sampler={
        "type": "uniform"})


def loader_rate(folder: Path, workers: int) -> float:
    """Images/s of epochs 2-4 of a new loader (epoch 1 starts the workers)."""
    loader = loader_for(folder, workers, None)
    loader.sampler.set_epoch(0)
    for _ in loader:  # epoch 1: workers start, pages warm
        pass
    start, images = time.perf_counter(), 0
    for epoch in (1, 2, 3):
        loader.sampler.set_epoch(epoch)
        images += sum(len(batch[0]) for batch in loader)
    return images / (time.perf_counter() - start)


def simulated_run(folder: Path, workers: int, cache: str | None, epochs: int = 2) -> dict:
    """Epochs of a fixed-cost step; the data time and its share of the wall time."""
    loader = loader_for(folder, workers, cache)
    clock, batches = StepClock(), 0
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        for _ in clock.batches(loader):
            time.sleep(STEP_S)
            batches += 1
    times = clock.lap(batches)
    return {"num_workers": workers, "cache": cache, "batches": batches, "data_time_s": round(times.data_time, 4),
            "sec_per_iter": round(times.sec_per_iter, 4), "waiting_fraction": round(times.waiting_fraction, 4)}


def cpu_training(work: Path) -> dict:
    from detimb.config import load_config
    from detimb.engine.trainer import Trainer

    overrides = shapes_overrides()
    out = {}
    for workers in (0, 1, 2):
        cfg = load_config(REPO / "configs/demo/faster_rcnn_shapes.yaml", [
            *overrides, f"data.num_workers={workers}", "train.schedule.max_iters=60", "train.log_interval=20",
            "evaluation.enabled=false", "train.checkpoint_interval=1000"])
        run = work / f"cpu_train_{workers}"
        Trainer(cfg, run, progress=False, overwrite=True, device="cpu").train()
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        rows = [r for r in rows if "sec_per_iter" in r and r["iter"] > 20]
        out[f"num_workers={workers}"] = {"sec_per_iter": round(float(np.mean([r["sec_per_iter"] for r in rows])), 4),
                                         "data_time": round(float(np.mean([r["data_time"] for r in rows])), 4)}
        print(workers, out[f"num_workers={workers}"], flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--deepforest", required=True, help=f"folder holding {TEXTURE}")
    p.add_argument("--images", type=int, default=48)
    p.add_argument("--work", default="/tmp/loader_bench")
    p.add_argument("--out", default=str(REPO / "benchmarks/results/loader_cpu.json"))
    args = p.parse_args()
    work = Path(args.work)
    folder = work / "aerial"
    make_images(folder, Path(args.deepforest) / TEXTURE, args.images)
    auto = resolve_num_workers("auto", torch.device("cuda", 0))  # as on a GPU machine with these cores
    # alternating trials, medians: this machine's speed drifts by tens of percent between minutes
    limits, rates = [], []
    for _ in range(3):
        limits.append(decode_limit(folder))
        rates.append(loader_rate(folder, auto))
        print(f"decode limit {limits[-1]:.1f} images/s, loader {rates[-1]:.1f} with {auto} workers", flush=True)
    limit, rate = float(np.median(limits)), float(np.median(rates))
    os.environ["DETIMB_CACHE_DIR"] = str(work / "cache_home")
    shm = Path(f"/dev/shm/detimb-decoded-{os.getuid()}")
    shutil.rmtree(shm, ignore_errors=True)
    waits = [simulated_run(folder, 0, None), simulated_run(folder, auto, None)]
    simulated_run(folder, auto, "ram", epochs=1)  # the first run builds the cache
    waits += [simulated_run(folder, 0, "ram"), simulated_run(folder, auto, "ram")]
    for row in waits:
        print(row, flush=True)
    shutil.rmtree(shm, ignore_errors=True)
    runs = {}
    for cache in (None, "ram"):
        first = simulated_run(folder, auto, cache, epochs=1)
        second = simulated_run(folder, auto, cache, epochs=1)
        runs[f"cache={cache}"] = {"first_run_data_time_s": first["data_time_s"],
                                  "second_run_data_time_s": second["data_time_s"]}
    shutil.rmtree(shm, ignore_errors=True)
    print(runs, flush=True)
    result = {"benchmark": "loader", "machine": f"{cpu_name()}, {os.cpu_count()} cores", "torch": torch.__version__,
              "images": f"{args.images} x {SIZE} px PNG, aerial texture, 20 boxes each", "batch": BATCH,
              "augmentation": TRANSFORMS, "auto_workers_on_an_accelerator": auto,
              "decode_limit_images_per_s": round(limit, 2), "loader_images_per_s": round(rate, 2),
              "loader_vs_limit": round(rate / limit, 3),
              "trials": {"decode_limit": [round(v, 2) for v in limits], "loader": [round(v, 2) for v in rates]},
              "simulated_step_s": STEP_S, "waiting": waits,
              "cache_two_runs": runs, "cpu_training_demo": cpu_training(work)}
    print(json.dumps(result, indent=2))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
