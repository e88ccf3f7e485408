"""Shared benchmark harness: build detectors from configs and time their training steps on
one batch of the built-in dataset, in alternating rounds in one process."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from detimb.config import load_config  # noqa: E402
from detimb.data.coco import CocoDetection, collate  # noqa: E402
from detimb.data.synthetic import make_shapes_dataset  # noqa: E402
from detimb.evaluation.coco_eval import class_frequencies  # noqa: E402
from detimb.losses.statistics import ClassStatistics  # noqa: E402
from detimb.models import build_detector  # noqa: E402
from detimb.utils import cpu_name  # noqa: E402


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()


def time_steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, images: list, targets: list, steps: int,
               device: torch.device) -> float:
    """Seconds per training step, averaged over ``steps``."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        loss = sum(model(images, targets).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def shapes_overrides() -> list[str]:
    """Config overrides pointing at a freshly written built-in dataset."""
    data = Path(tempfile.mkdtemp()) / "shapes"
    make_shapes_dataset(data)
    return [f"data.train.ann_file={data}/annotations/train.json", f"data.train.img_dir={data}/train",
            f"data.val.ann_file={data}/annotations/val.json", f"data.val.img_dir={data}/val"]


def compare_step_times(variants: dict[str, tuple[str, str]], rounds: int, steps: int,
                       device: torch.device) -> dict[str, dict]:
    """``variants``: name -> (config path relative to configs/, baseline name). Returns each
    variant's median step time, parameter count and ratios to its baseline."""
    overrides = shapes_overrides()
    models, optims, batch = {}, {}, None
    for name, (config, _) in variants.items():
        cfg = load_config(REPO / "configs" / config, overrides)
        if batch is None:
            ds = CocoDetection(cfg.data.train.ann_file, cfg.data.train.img_dir)
            images, targets = collate([ds[i] for i in range(cfg.data.batch_size)])
            batch = ([im.to(device) for im in images], [{k: v.to(device) for k, v in t.items()} for t in targets])
            freq = class_frequencies(ds.records.data)
            stats = ClassStatistics(tuple(freq[c]["instances"] for c in ds.label_map.coco_ids),
                                    tuple(freq[c]["images"] for c in ds.label_map.coco_ids),
                                    len(ds.records.data["images"]))
        torch.manual_seed(0)
        models[name] = build_detector(cfg.model, ds.label_map, stats).to(device).train()
        optims[name] = torch.optim.SGD(models[name].parameters(), lr=1e-4, momentum=0.9)
        time_steps(models[name], optims[name], *batch, 3, device)
    times: dict[str, list[float]] = {name: [] for name in models}
    names = list(models)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            times[name].append(time_steps(models[name], optims[name], *batch, steps, device))
    med = {k: statistics.median(v) for k, v in times.items()}
    params = {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()}
    return {name: {"config": config, "baseline": base, "median_step_s": med[name], "ratio": med[name] / med[base],
                   "params": params[name], "params_ratio": params[name] / params[base]}
            for name, (config, base) in variants.items()}
