"""Evaluation backends through detimb's evaluator: pycocotools vs faster-coco-eval on a
synthetic set of 1000 images and 100k detections, in one run; the stats must be identical.
Also the Python API's predict throughput on CPU at batch 1 and 8 (demo detector, untrained).

    python benchmarks/eval.py [--images 1000] [--dets-per-image 100] [--out benchmarks/results/eval_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, cpu_name  # noqa: E402
from detimb.api import Predictor  # noqa: E402
from detimb.config import load_config  # noqa: E402
from detimb.data.coco import coco_api  # noqa: E402
from detimb.data.label_map import LabelMap  # noqa: E402
from detimb.evaluation.coco_eval import evaluate_coco  # noqa: E402
from detimb.models import build_model  # noqa: E402


def synthetic(images: int, dets_per_image: int, classes: int = 20, seed: int = 0) -> tuple[dict, list]:
    rng = np.random.default_rng(seed)
    gt = {"images": [], "annotations": [], "categories": [{"id": c + 1, "name": f"c{c}"} for c in range(classes)]}
    results = []
    for i in range(1, images + 1):
        gt["images"].append({"id": i, "file_name": f"{i}.png", "width": 640, "height": 480})
        for _ in range(int(rng.integers(3, 15))):
            w, h = rng.uniform(10, 200, 2)
            x, y = rng.uniform(0, 640 - w), rng.uniform(0, 480 - h)
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": i, "bbox": [x, y, w, h],
                                      "area": w * h, "iscrowd": 0, "category_id": int(rng.integers(1, classes + 1))})
        mine = [a for a in gt["annotations"] if a["image_id"] == i]
        for k in range(dets_per_image):
            if k < len(mine):  # a jittered true box, sometimes of a confused class
                x, y, w, h = mine[k]["bbox"]
                box = [x + rng.normal(0, 5), y + rng.normal(0, 5), w * rng.uniform(0.8, 1.2), h * rng.uniform(0.8, 1.2)]
                cat = mine[k]["category_id"] if rng.random() < 0.8 else int(rng.integers(1, classes + 1))
            else:
                w, h = rng.uniform(10, 200, 2)
                box, cat = [rng.uniform(0, 640 - w), rng.uniform(0, 480 - h), w, h], int(rng.integers(1, classes + 1))
            results.append({"image_id": i, "category_id": cat, "bbox": [float(v) for v in box],
                            "score": float(rng.uniform(0, 1))})
    return gt, results


def predict_throughput(batch: int, repeats: int = 3) -> float:
    cfg = load_config(REPO / "configs/demo/faster_rcnn_shapes.yaml")
    label_map = LabelMap.from_categories([{"id": i + 1, "name": f"c{i}"} for i in range(6)])
    torch.manual_seed(0)
    predictor = Predictor(build_model(cfg.model, label_map), label_map, device="cpu")
    images = [np.random.default_rng(i).integers(0, 255, (128, 128, 3), dtype=np.uint8) for i in range(8 * batch)]
    predictor.predict(images[:batch], batch_size=batch)  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        predictor.predict(images, batch_size=batch)
    return repeats * len(images) / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--dets-per-image", type=int, default=100)
    p.add_argument("--out", default=str(REPO / "benchmarks/results/eval_cpu.json"))
    args = p.parse_args()
    gt, results = synthetic(args.images, args.dets_per_image)
    coco = coco_api(gt)
    label_map = LabelMap.from_categories(gt["categories"])
    seconds, reports = {}, {}
    for backend in ("pycocotools", "faster_coco_eval"):
        start = time.perf_counter()
        reports[backend] = evaluate_coco(coco, results, "bbox", label_map, backend=backend)
        seconds[backend] = time.perf_counter() - start
    a, b = reports["pycocotools"], reports["faster_coco_eval"]
    stat_diff = max(abs(x - y) for x, y in zip(a["stats"].values(), b["stats"].values()))
    class_diff = max(abs((x["AP"] or 0) - (y["AP"] or 0)) for x, y in zip(a["per_class"], b["per_class"]))
    out = {"benchmark": "eval", "cpu": cpu_name(), "threads": torch.get_num_threads(), "images": args.images,
           "detections": len(results), "seconds": seconds,
           "speedup": seconds["pycocotools"] / seconds["faster_coco_eval"],
           "max_stat_difference": stat_diff, "max_per_class_AP_difference": class_diff, "mAP": a["stats"]["mAP"],
           "predict_images_per_s": {"batch_1": predict_throughput(1), "batch_8": predict_throughput(8)}}
    print(json.dumps(out, indent=2))
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
