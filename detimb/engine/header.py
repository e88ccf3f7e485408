"""The lines a training run prints before its progress bar: what is trained, on what, how long, where."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from torch import nn

from detimb.data.label_map import LabelMap
from detimb.losses import ClassStatistics
from detimb.models.transform import DetectionTransform, SegmentationTransform

UPSCALE_WARNING = 2.0  # a median upscale above this earns one warning (4x the pixels per step)


def _count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k" if n >= 1e3 else str(n)


def run_header(cfg: DictConfig, model: nn.Module, train_data: dict[str, Any], label_map: LabelMap, work_dir: Path,
               start: int) -> str:
    """Model and parameters; training images and classes, the rarest and the most common;
    schedule and evaluation interval; run folder (and where a resumed run starts)."""
    m, t, s = cfg.model, cfg.train, cfg.train.schedule
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    parts = [str(m.type)]
    for slot in ("backbone", "neck"):
        if slot in m and isinstance(m[slot], DictConfig) and "type" in m[slot]:
            parts.append(str(m[slot].type))
    stats = ClassStatistics.from_coco(train_data, label_map.coco_ids)
    order = sorted(range(len(label_map.names)), key=lambda i: stats.instances[i])
    rare, common = order[0], order[-1]
    evaluation = f"evaluation every {t.eval_interval}" if cfg.evaluation.enabled else "no evaluation (--no-eval)"
    resumed = f", resuming at iteration {start}" if start else ""
    return "\n".join([
        f"model: {' + '.join(parts)}, {_count(params)} parameters ({_count(trainable)} trainable)",
        f"data: {len(train_data['images'])} training images, {len(label_map.names)} classes; rarest"
        f" {label_map.names[rare]} ({stats.instances[rare]} instances), most common {label_map.names[common]}"
        f" ({stats.instances[common]})",
        f"schedule: {s.max_iters} iterations of batch {cfg.data.batch_size}, lr {t.optimizer.lr:g} ({s.policy});"
        f" {evaluation}{resumed}",
        f"run folder: {work_dir}",
    ])


def upscale_factor(transform: nn.Module, height: int, width: int) -> float:
    """How much a model's ``transform`` scales an image of this size: 1 when it keeps sizes
    (``model.transform.resize: false``) and for SSD's fixed input, which is the model's own."""
    if not isinstance(transform, (DetectionTransform, SegmentationTransform)) or not transform.resize_enabled:
        return 1.0
    if isinstance(transform, DetectionTransform):
        if transform.fixed_size is not None:
            return 1.0
        short, long = float(transform.min_size[-1]), float(transform.max_size)
    else:
        short, long = float(transform.min_size), float(transform.max_size)
    return min(short / max(1, min(height, width)), long / max(1, max(height, width)))


def upscale_warning(transform: nn.Module, images: list[dict[str, Any]]) -> str | None:
    """One warning when the transform enlarges the median training image more than 2x (the
    fine-tuning configs keep torchvision's 800 px, a step on small images then costs the
    square of the factor), with the one-line fix."""
    if not images:
        return None
    factor = statistics.median(upscale_factor(transform, int(im["height"]), int(im["width"])) for im in images)
    if factor <= UPSCALE_WARNING:
        return None
    sizes = sorted((int(im["height"]) * int(im["width"]), int(im["width"]), int(im["height"])) for im in images)
    _, width, height = sizes[len(sizes) // 2]
    return (f"model.transform enlarges the training images {factor:.1f}x on the median ({width}x{height} px to"
            f" about {round(width * factor)}x{round(height * factor)}): each step computes {factor ** 2:.0f}x their"
            " pixels. To train at the images' own size: --cfg-options model.transform.resize=false (or set"
            " model.transform.min_size / max_size near the data's size)")
