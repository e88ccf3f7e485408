"""Train-step time: a detimb-built Faster R-CNN vs the identical model built by torchvision.

Both models hold the same weights and see the same batch; their steps are timed in
alternating rounds in one process so machine drift hits both alike. Reports the median
step time of each and their ratio (target <= 1.02: the spine adds no overhead).

    python benchmarks/train_step.py [--config configs/demo/faster_rcnn_shapes.yaml]
        [--rounds 15] [--steps 10] [--device cpu|cuda] [--out benchmarks/results/train_step_<device>.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, device_name, shapes_overrides, time_steps  # noqa: E402
from detimb.config import load_config  # noqa: E402
from detimb.data.coco import CocoDetection, collate  # noqa: E402
from detimb.models import build_detector  # noqa: E402
from benchmarks.twins import torchvision_twin  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(REPO / "configs/demo/faster_rcnn_shapes.yaml"))
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out")
    args = p.parse_args()
    device = torch.device(args.device)
    cfg = load_config(args.config, shapes_overrides())
    ds = CocoDetection(cfg.data.train.ann_file, cfg.data.train.img_dir)
    images, targets = collate([ds[i] for i in range(cfg.data.batch_size)])
    images = [im.to(device) for im in images]
    targets = [{k: v.to(device) for k, v in t.items()} for t in targets]

    torch.manual_seed(0)
    ours = build_detector(cfg.model, ds.label_map)
    theirs = torchvision_twin(ours, cfg, ds.label_map.num_classes, with_masks=False)
    theirs.load_state_dict(ours.state_dict())
    models = {"detimb": ours.to(device).train(), "torchvision": theirs.to(device).train()}
    optims = {k: torch.optim.SGD(m.parameters(), lr=0.001, momentum=0.9) for k, m in models.items()}
    for name in models:  # warm-up
        time_steps(models[name], optims[name], images, targets, 3, device)
    times: dict[str, list[float]] = {name: [] for name in models}
    for r in range(args.rounds):
        for name in list(models) if r % 2 == 0 else list(models)[::-1]:
            times[name].append(time_steps(models[name], optims[name], images, targets, args.steps, device))
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "benchmark": "train_step", "config": str(Path(args.config).resolve().relative_to(REPO)),
        "device": device_name(device), "threads": torch.get_num_threads(), "batch_size": cfg.data.batch_size,
        "rounds": args.rounds, "steps_per_round": args.steps, "median_step_s": med,
        "ratio_detimb_over_torchvision": med["detimb"] / med["torchvision"], "torch": torch.__version__,
    }
    print(json.dumps(result, indent=2))
    out = Path(args.out or REPO / "benchmarks" / "results" / f"train_step_{device.type}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
