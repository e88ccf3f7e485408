"""The lines a training run prints before its progress bar: what is trained, on what, how long, where."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from torch import nn

from detimb.data.label_map import LabelMap
from detimb.losses import ClassStatistics


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
