"""Training-step time of the demo detector with each sampler, relative to ``random``, and
the cost of one sampler call on its own.

Step times: the configs in configs/samplers/ (RoI-head samplers on the demo Faster R-CNN;
RetinaNet's focal sampler against its sigmoid focal loss), same batch, alternating rounds
in one process. Sampler calls: 8 images x 2000 candidates with random labels, IoUs and
losses. Targets (the samplers issue): <= 1.05 for iou_balanced, focal and isr_p, <= 1.35
for OHEM.

    python benchmarks/samplers.py [--rounds 8] [--steps 8] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.train_step import cpu_name, time_steps  # noqa: E402
from detimb.config import load_config  # noqa: E402
from detimb.data.coco import CocoDetection, collate  # noqa: E402
from detimb.data.synthetic import make_shapes_dataset  # noqa: E402
from detimb.models import build_detector  # noqa: E402
from detimb.samplers import SAMPLERS, Candidates  # noqa: E402

STEP_VARIANTS = {  # name -> (config, baseline name)
    "random": ("random", "random"),
    "ohem": ("ohem", "random"),
    "ohem_ratio": ("ohem_ratio", "random"),
    "iou_balanced": ("iou_balanced", "random"),
    "instance_balanced": ("instance_balanced", "random"),
    "focal": ("focal", "random"),
    "isr_p": ("isr_p", "random"),
    "retinanet_sigmoid_focal_loss": ("../demo/retinanet_shapes", "retinanet_sigmoid_focal_loss"),
    "retinanet_focal_sampler": ("retinanet_focal", "retinanet_sigmoid_focal_loss"),
}
CALL_SPECS = {
    "random": {"type": "random", "num": 512, "pos_fraction": 0.25},
    "instance_balanced": {"type": "instance_balanced", "num": 512, "pos_fraction": 0.25},
    "iou_balanced": {"type": "iou_balanced", "num": 512, "pos_fraction": 0.25},
    "ohem": {"type": "ohem", "num": 512, "pos_fraction": 0.25},
    "ohem_ratio": {"type": "ohem", "mode": "ratio"},
    "focal": {"type": "focal"},
    "isr_p": {"type": "isr_p"},
}


def step_times(args: argparse.Namespace, device: torch.device) -> dict[str, dict[str, float]]:
    data = Path(tempfile.mkdtemp()) / "shapes"
    make_shapes_dataset(data)
    paths = [f"data.train.ann_file={data}/annotations/train.json", f"data.train.img_dir={data}/train",
             f"data.val.ann_file={data}/annotations/val.json", f"data.val.img_dir={data}/val"]
    models, optims, batch = {}, {}, None
    for name, (config, _) in STEP_VARIANTS.items():
        cfg = load_config(REPO / "configs" / "samplers" / f"{config}.yaml", paths)
        if batch is None:
            ds = CocoDetection(cfg.data.train.ann_file, cfg.data.train.img_dir)
            images, targets = collate([ds[i] for i in range(cfg.data.batch_size)])
            batch = ([im.to(device) for im in images], [{k: v.to(device) for k, v in t.items()} for t in targets])
        torch.manual_seed(0)
        models[name] = build_detector(cfg.model, ds.label_map).to(device).train()
        optims[name] = torch.optim.SGD(models[name].parameters(), lr=1e-4, momentum=0.9)
        time_steps(models[name], optims[name], *batch, 3, device)
    times: dict[str, list[float]] = {name: [] for name in models}
    names = list(models)
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            times[name].append(time_steps(models[name], optims[name], *batch, args.steps, device))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {name: {"median_step_s": med[name], "baseline": base, "ratio": med[name] / med[base]}
            for name, (_, base) in STEP_VARIANTS.items()}


def call_times(device: torch.device, images: int = 8, per_image: int = 2000, repeats: int = 20) -> dict[str, float]:
    g = torch.Generator().manual_seed(0)
    candidates = []
    for _ in range(images):
        labels = torch.where(torch.rand(per_image, generator=g) < 0.05, torch.randint(1, 7, (per_image,), generator=g),
                             torch.zeros(per_image, dtype=torch.int64))
        labels[torch.rand(per_image, generator=g) < 0.05] = -1
        ious = torch.where(labels > 0, 0.5 + 0.5 * torch.rand(per_image, generator=g),
                           0.5 * torch.rand(per_image, generator=g))
        candidates.append(Candidates(labels.to(device), ious.to(device),
                                     torch.randint(0, 10, (per_image,), generator=g).to(device),
                                     torch.rand(per_image, generator=g).to(device)))
    out = {}
    for name, spec in CALL_SPECS.items():
        sampler = SAMPLERS.build(spec, name)
        sampler(candidates)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            sampler(candidates)
        if device.type == "cuda":
            torch.cuda.synchronize()
        out[name] = (time.perf_counter() - start) / repeats * 1000
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out")
    args = p.parse_args()
    device = torch.device(args.device)
    result = {"benchmark": "samplers",
              "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
              "threads": torch.get_num_threads(), "torch": torch.__version__, "rounds": args.rounds,
              "steps_per_round": args.steps, "sampler_call_ms_8x2000": call_times(device),
              "train_step": step_times(args, device)}
    print(json.dumps(result, indent=2))
    out = Path(args.out or REPO / "benchmarks" / "results" / f"samplers_{device.type}.json")
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
