"""Optimizer and learning-rate schedule from ``cfg.train``."""

from __future__ import annotations

import math

import torch
from omegaconf import DictConfig
from torch import nn

from detimb.errors import ConfigError


def build_optimizer(cfg: DictConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.type == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.type == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    raise ConfigError(f"train.optimizer.type must be 'sgd' or 'adamw', got {cfg.type!r}")


class WarmupSchedule:
    """The learning-rate factor at an iteration: linear warmup from ``warmup_factor`` over
    ``warmup_iters``, then step decay (x ``gamma`` at each of ``steps``) or cosine decay
    to ``min_lr_factor`` at ``max_iters``. A plain object, so LambdaLR can save it."""

    def __init__(self, max_iters: int, warmup_iters: int, warmup_factor: float, policy: str,
                 steps: list[int], gamma: float, min_lr_factor: float) -> None:
        if policy not in ("step", "cosine"):
            raise ConfigError(f"train.schedule.policy must be 'step' or 'cosine', got {policy!r}")
        self.max_iters, self.warmup_iters, self.warmup_factor = max_iters, warmup_iters, warmup_factor
        self.policy, self.steps, self.gamma, self.min_lr_factor = policy, sorted(steps), gamma, min_lr_factor

    def __call__(self, it: int) -> float:
        if self.policy == "step":
            factor = self.gamma ** sum(it >= s for s in self.steps)
        else:
            progress = min(1.0, it / max(1, self.max_iters))
            factor = self.min_lr_factor + (1 - self.min_lr_factor) * 0.5 * (1 + math.cos(math.pi * progress))
        if it < self.warmup_iters:
            alpha = it / self.warmup_iters
            factor *= self.warmup_factor * (1 - alpha) + alpha
        return factor


def build_scheduler(cfg: DictConfig, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    schedule = WarmupSchedule(cfg.max_iters, cfg.warmup_iters, cfg.warmup_factor, cfg.policy, list(cfg.steps),
                              cfg.gamma, cfg.min_lr_factor)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
