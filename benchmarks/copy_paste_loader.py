"""Does class-aware copy-paste keep the loader ahead of the training step?

On the demo data (shapes, 128 px, masks on every instance) with the demo training settings
(batch 2, horizontal flip), the training loader with 2 persistent workers is timed over
epochs 2-3 without and with ``configs/data/copy_paste.yaml``'s pasting (up to 5 instances
drawn by repeat factor, threshold 0.1), median of 3 alternating trials; beside it, the images
per second the demo detector's training step consumes (``data.num_workers: 0`` excluded: the
step alone, on batches already in memory, median of 30 steps after 10 of warm-up). Copy-paste
keeps up when the loader with it delivers at least what the step consumes.

    python benchmarks/copy_paste_loader.py [--out benchmarks/results/copy_paste_loader_cpu.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import cpu_name  # noqa: E402
from detimb.config import load_config  # noqa: E402
from detimb.data.loader import LoaderSettings, build_datasets, build_loader  # noqa: E402
from detimb.engine.trainer import Trainer  # noqa: E402
from detimb.utils import atomic_write_json  # noqa: E402

DATA = REPO / "data" / "shapes"


def settings(paste: bool) -> list[str]:
    data = [f"data.{s}.ann_file={DATA}/annotations/{s}.json" for s in ("train", "val")]
    data += [f"data.{s}.img_dir={DATA}/{s}" for s in ("train", "val")]
    return [*data, "data.check_images=false", *(["data.train.copy_paste.enabled=true",
                                                 "data.train.copy_paste.max_pasted=6",
                                                 "data.train.copy_paste.repeat_threshold=0.1"] if paste else [])]


def loader_images_per_second(paste: bool) -> float:
    cfg = load_config("detimb://demo/faster_rcnn_shapes", settings(paste))
    train, _ = build_datasets(cfg.data, with_masks=False, seed=0)
    loader = build_loader(train, batch_size=cfg.data.batch_size, seed=0, sampler={"type": "uniform"},
                          settings=LoaderSettings(num_workers=2))
    for _ in loader:  # epoch 1: workers start
        pass
    start, images = time.perf_counter(), 0
    for epoch in (1, 2):
        loader.sampler.set_epoch(epoch)
        for batch, _ in loader:
            images += len(batch)
    return images / (time.perf_counter() - start)


def step_images_per_second() -> float:
    torch.set_num_threads(2)
    trainer = Trainer(load_config("detimb://demo/faster_rcnn_shapes", [*settings(False), "data.num_workers=0",
                                                                       "evaluation.enabled=false"]),
                      "/tmp/copy_paste_loader_step", progress=False)
    batch = next(iter(trainer.train_loader))
    times = []
    for i in range(40):
        start = time.perf_counter()
        trainer.step(*batch)
        if i >= 10:
            times.append(time.perf_counter() - start)
    return len(batch[0]) / statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "benchmarks/results/copy_paste_loader_cpu.json"))
    args = p.parse_args()
    trials: dict[str, list[float]] = {"plain": [], "copy_paste": []}
    for _ in range(3):  # alternating, so drift in the machine's speed touches both
        for name in trials:
            trials[name].append(loader_images_per_second(name == "copy_paste"))
            print(name, f"{trials[name][-1]:.1f} images/s", flush=True)
    step = step_images_per_second()
    out = {"machine": cpu_name(), "workers": 2, "batch_size": 2, "trials": trials,
           "loader_images_per_s": {k: statistics.median(v) for k, v in trials.items()},
           "step_images_per_s": step,
           "copy_paste_over_plain": statistics.median(trials["copy_paste"]) / statistics.median(trials["plain"]),
           "copy_paste_loader_over_step": statistics.median(trials["copy_paste"]) / step}
    atomic_write_json(Path(args.out), out, indent=2)
    print({k: v for k, v in out.items() if k != "trials"})


if __name__ == "__main__":
    main()
