"""Numeric precision of a training step: the autocast dtype of ``train.amp``, the finite-loss
check, and SyncBatchNorm for ``train.sync_bn``."""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from detimb.errors import ConfigError, TrainingError


def with_sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` with every BatchNorm a SyncBatchNorm (``train.sync_bn``), on CUDA; torch's
    SyncBatchNorm does not run on the CPU, where a warning says the setting is ignored."""
    if device.type != "cuda":
        warnings.warn("train.sync_bn needs CUDA devices (torch's SyncBatchNorm); BatchNorm stays per rank here",
                      stacklevel=2)
        return model
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)


def autocast_dtype(amp: bool | str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``train.amp`` on ``device``: None (float32), float16 (``fp16``
    or ``true``: CUDA only, elsewhere a warning and float32) or bfloat16 (``bf16``: CUDA
    with bf16 support, or the CPU)."""
    if amp is False:
        return None
    if amp is True or amp == "fp16":
        if device.type != "cuda":
            warnings.warn(f"train.amp: fp16 needs a CUDA device; training in float32 on {device.type} (bf16 runs on"
                          " the CPU too)", stacklevel=2)
            return None
        return torch.float16
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"train.amp: bf16 is not supported by {torch.cuda.get_device_name(device)}. Fix: use fp16")
    return torch.bfloat16


def check_finite(losses: dict[str, torch.Tensor], iteration: int) -> torch.Tensor:
    """The loss terms as one detached float32 tensor, after one check that all are finite
    (one host read-back per step, not one per term); a TrainingError names the first
    term that is not."""
    values = torch.stack([v.detach().float().reshape(()) for v in losses.values()])
    if not bool(torch.isfinite(values).all()):
        for name, value in zip(losses, values.tolist()):
            if not math.isfinite(value):
                raise TrainingError(
                    f"iteration {iteration}: loss term '{name}' is {value}. Fix: lower train.optimizer.lr,"
                    " set train.grad_clip, lengthen train.schedule.warmup_iters, or check the data for broken boxes"
                )
    return values
