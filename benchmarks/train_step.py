"""Train-step time: a detimb-built Faster R-CNN vs the identical model built by torchvision.

Both models hold the same weights and see the same batch; their steps are timed in
alternating rounds in one process so machine drift hits both alike. Reports the median
step time of each and their ratio (target <= 1.02: the spine adds no overhead).

    python benchmarks/train_step.py [--config configs/demo/faster_rcnn_shapes.yaml]
        [--rounds 15] [--steps 10] [--warmup 3] [--batch-size N] [--device cpu|cuda] [--amp]
        [--out benchmarks/results/train_step_<device>.json]
    python benchmarks/train_step.py --arch fasterrcnn_resnet50_fpn --size 512 --rounds 6 --steps 2

``--arch``: torchvision's own builder (``weights=None``, images resized to ``--size``) against
detimb's model of that architecture loaded from the same weights file, as a user would
fine-tune it (FrozenBatchNorm2d, 3 trainable stages on both sides).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from typing import Any
from pathlib import Path

import torch
from torchvision.models.detection import fasterrcnn_resnet50_fpn
from torchvision.ops import FrozenBatchNorm2d

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, device_name, shapes_overrides, time_steps  # noqa: E402
from detimb.config import load_config  # noqa: E402
from detimb.data.coco import CocoDetection, collate  # noqa: E402
from detimb.models import build_detector  # noqa: E402
from benchmarks.twins import torchvision_twin  # noqa: E402


ARCH_BUILDERS = {"fasterrcnn_resnet50_fpn": fasterrcnn_resnet50_fpn}


def arch_pair(arch: str, size: int, data_cfg: Any, label_map: Any) -> tuple[torch.nn.Module, torch.nn.Module]:
    """torchvision's ``arch`` and detimb's, built from one weights file (as fine-tuning starts)."""
    theirs = ARCH_BUILDERS[arch](weights=None, weights_backbone=None, num_classes=label_map.num_classes,
                                 min_size=size, max_size=size)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "weights.pth"
        torch.save(theirs.state_dict(), weights)
        data = {split: {"ann_file": data_cfg.data[split].ann_file, "img_dir": data_cfg.data[split].img_dir}
                for split in ("train", "val")}
        config = Path(tmp) / "arch.yaml"
        config.write_text(json.dumps({"model": {"arch": arch, "weights": str(weights),
                                                "transform": {"min_size": size, "max_size": size}},
                                      "data": data}))
        ours = build_detector(load_config(config).model, label_map)
    return ours, _frozen_twin(theirs, ours)


def _frozen_twin(theirs: torch.nn.Module, ours: torch.nn.Module) -> torch.nn.Module:
    """``theirs`` with its backbone's BatchNorm2d frozen and the stages detimb freezes frozen
    (torchvision's pretrained defaults), holding detimb's weights."""
    body = theirs.backbone.body
    for name, child in list(body.named_children()):
        _freeze_bn(body, name, child)
    trainable = {n: q.requires_grad for n, q in ours.named_parameters()}
    for name, p in theirs.named_parameters():
        p.requires_grad_(trainable[name])
    theirs.load_state_dict(ours.state_dict())
    return theirs


def _freeze_bn(parent: torch.nn.Module, name: str, module: torch.nn.Module) -> None:
    if isinstance(module, torch.nn.BatchNorm2d):
        setattr(parent, name, FrozenBatchNorm2d(module.num_features))
        return
    for child_name, child in list(module.named_children()):
        _freeze_bn(module, child_name, child)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(REPO / "configs/demo/faster_rcnn_shapes.yaml"))
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per model before the rounds")
    p.add_argument("--batch-size", type=int, help="images per step (default: the config's data.batch_size)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--arch", choices=sorted(ARCH_BUILDERS), help="a torchvision architecture instead of --config")
    p.add_argument("--size", type=int, default=512, help="image size of --arch runs")
    p.add_argument("--amp", action="store_true", help="mixed precision (CUDA)")
    p.add_argument("--out")
    args = p.parse_args()
    device = torch.device(args.device)
    cfg = load_config(args.config, shapes_overrides())
    ds = CocoDetection(cfg.data.train.ann_file, cfg.data.train.img_dir)
    batch_size = args.batch_size or cfg.data.batch_size
    images, targets = collate([ds[i] for i in range(batch_size)])
    images = [im.to(device) for im in images]
    targets = [{k: v.to(device) for k, v in t.items()} for t in targets]

    torch.manual_seed(0)
    if args.arch:
        ours, theirs = arch_pair(args.arch, args.size, cfg, ds.label_map)
    else:
        ours = build_detector(cfg.model, ds.label_map)
        theirs = torchvision_twin(ours, cfg, ds.label_map.num_classes, with_masks=False)
        theirs.load_state_dict(ours.state_dict())
    models = {"detimb": ours.to(device).train(), "torchvision": theirs.to(device).train()}
    optims = {k: torch.optim.SGD(m.parameters(), lr=0.001, momentum=0.9) for k, m in models.items()}
    amp = torch.autocast(device.type, enabled=args.amp and device.type == "cuda")
    with amp:
        for name in models:  # warm-up
            time_steps(models[name], optims[name], images, targets, args.warmup, device)
        times: dict[str, list[float]] = {name: [] for name in models}
        for r in range(args.rounds):
            for name in list(models) if r % 2 == 0 else list(models)[::-1]:
                times[name].append(time_steps(models[name], optims[name], images, targets, args.steps, device))
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "benchmark": "train_step", "config": args.arch or str(Path(args.config).resolve().relative_to(REPO)),
        "image_size": args.size if args.arch else None, "amp": bool(args.amp and device.type == "cuda"),
        "device": device_name(device), "threads": torch.get_num_threads(), "batch_size": batch_size,
        "warmup_steps": args.warmup, "rounds": args.rounds, "steps_per_round": args.steps, "median_step_s": med,
        "ratio_detimb_over_torchvision": med["detimb"] / med["torchvision"], "torch": torch.__version__,
    }
    print(json.dumps(result, indent=2))
    name = f"train_step_{args.arch}_{device.type}{'_amp' if result['amp'] else ''}" if args.arch else \
        f"train_step_{device.type}"
    out = Path(args.out or REPO / "benchmarks" / "results" / f"{name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
