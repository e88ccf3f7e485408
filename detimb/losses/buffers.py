"""Loss state whose size is known only once the data is: buffers that take the saved shape on load."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


def adopt_saved_shapes(module: nn.Module, state_dict: dict[str, Any], prefix: str, names: tuple[str, ...]) -> None:
    """Before ``module`` loads ``state_dict``, give each buffer in ``names`` the saved shape,
    so a loss built without the training set's statistics (to load a checkpoint) takes the
    saved state instead of failing on a size mismatch. The buffer keeps its own device and
    dtype (the module's: the file was read to the CPU, the model may be on a GPU); loading
    then copies the saved values into it."""
    for name in names:
        saved = state_dict.get(prefix + name)
        current = module.get_buffer(name)
        if isinstance(saved, Tensor) and current is not None:
            setattr(module, name, torch.empty(saved.shape, dtype=current.dtype, device=current.device))


def all_reduce_sum(t: Tensor) -> Tensor:
    """``t`` summed over the ranks of an initialised process group (itself otherwise)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        t = t.clone()
        torch.distributed.all_reduce(t)
    return t


def world_size() -> int:
    """The ranks of an initialised process group (1 otherwise)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


def updates_state(module: nn.Module) -> bool:
    """Whether a loss's running statistics move in this call: in training, in the pass with
    gradients (a sampler's scoring pass, without gradient, reads them but leaves them)."""
    return module.training and torch.is_grad_enabled()
