"""torch.distributed setup for torchrun: one process per device, gloo on CPU, nccl on CUDA."""

from __future__ import annotations

import datetime
import os
from typing import Any

import torch
import torch.distributed as dist

from detimb.errors import ConfigError, InputError


def init_distributed(timeout_minutes: float = 180.0) -> tuple[int, int, torch.device]:
    """(rank, world size, device); initialises the process group when run under torchrun.
    ``timeout_minutes``: how long a collective waits (rank 0 evaluates the whole validation
    set while the others wait in one; torch's default, 10 to 30 minutes, can kill that)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=timeout_minutes))
    rank = dist.get_rank() if dist.is_initialized() else 0
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` ('cpu', 'cuda', 'cuda:1', a torch.device), checked against this machine;
    None: CUDA when available, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        out = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise InputError(f"device {device!r} is not a device: give cpu, cuda or cuda:N") from err
    if out.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InputError(f"device {device!r}: this machine has no CUDA device (torch.cuda.is_available() is"
                             " False). Fix: use device cpu, or install a CUDA build of torch")
        if out.index is not None and out.index >= count:
            raise InputError(f"device {device!r}: this machine has {count} CUDA device(s), cuda:0 to"
                             f" cuda:{count - 1}")
    return out


def setup(device: str | torch.device | None = None, timeout_minutes: float = 180.0
          ) -> tuple[int, int, torch.device]:
    """(rank, world size, device) of this process: under torchrun, its rank's device (CUDA's
    LOCAL_RANK, or the CPU), where an explicit ``device`` is refused; alone, ``device``
    checked by ``resolve_device``."""
    rank, world, own = init_distributed(timeout_minutes)
    if device is None:
        return rank, world, own
    if world > 1:
        raise ConfigError("--device with torchrun: each rank takes the GPU of its LOCAL_RANK. Fix: leave --device"
                          " out, or choose GPUs with CUDA_VISIBLE_DEVICES")
    return rank, world, resolve_device(device)


def barrier() -> None:
    """Wait for every rank (nothing without a process group)."""
    if dist.is_initialized():
        dist.barrier()


def is_main() -> bool:
    return not dist.is_initialized() or dist.get_rank() == 0


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (just ``[obj]`` without a process group)."""
    if not dist.is_initialized():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any) -> Any:
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank. DDP syncs
    buffers only at the start of each forward, so after the last step they differ."""
    if dist.is_initialized():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
