"""Checkpoints: written atomically, read back with ``weights_only=True``.

A checkpoint holds the model, optimizer, scheduler and AMP scaler states, the iteration,
every random number generator's state, the resolved config (YAML text) and the label
map, so ``--resume`` continues exactly where a run stopped and predictions keep the
class names of the data the model was trained on.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detimb.errors import CheckpointError
from detimb.models.weights import load_checkpoint
from detimb.utils import atomic_write


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) generator states, as tensors and plain types."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():  # this process's device only: a run may resume on another GPU count
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(cuda_rng_of(state["cuda"], torch.cuda.current_device()))


def cuda_rng_of(saved: Any, device_index: int) -> torch.Tensor:
    """The CUDA generator state for ``device_index`` from a checkpoint: one state (this
    version saves the saving process's device only), or the list of every visible GPU's
    that earlier versions saved, from which this device's is taken, or the first where the
    list is shorter (a run saved on 4 GPUs resumed on 1)."""
    if isinstance(saved, (list, tuple)):
        if not saved:
            raise CheckpointError("the checkpoint's CUDA generator state is an empty list. Fix: resume from another"
                                  " checkpoint, or start with --load-from")
        return saved[device_index] if device_index < len(saved) else saved[0]
    return saved


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def iteration_checkpoint(work_dir: Path, iteration: int) -> Path:
    return work_dir / f"iter_{iteration:07d}.pth"


def iteration_checkpoints(work_dir: Path) -> list[Path]:
    """The run folder's ``iter_N.pth`` files, newest first."""
    return sorted(work_dir.glob("iter_*.pth"), key=lambda p: p.name, reverse=True)


def prune_checkpoints(work_dir: Path, keep: int) -> None:
    for old in iteration_checkpoints(work_dir)[keep:]:
        old.unlink(missing_ok=True)


def clean_stray_temporaries(work_dir: Path) -> int:
    """Remove the temporary files an interrupted atomic write left (``.<name>.<random>.tmp``)."""
    stray = [p for p in work_dir.glob(".*.tmp") if p.is_file()]
    for p in stray:
        p.unlink(missing_ok=True)
    return len(stray)


def load_resume_checkpoint(requested: Path) -> tuple[dict[str, Any], Path, list[str]]:
    """The requested checkpoint, or when it is torn the newest intact one beside it
    (``iter_N.pth`` newest first, then ``last.pth``, then ``best.pth``). Returns the
    state, the file used and what was skipped (for the user)."""
    folder = requested.parent
    candidates = [requested] + [p for p in [*iteration_checkpoints(folder), folder / "last.pth", folder / "best.pth"]
                                if p != requested and p.is_file()]
    skipped: list[str] = []
    for path in candidates:
        try:
            return load_checkpoint(path), path, skipped
        except CheckpointError as err:
            if not path.exists() and path == requested:
                raise
            skipped.append(str(err))
    raise CheckpointError(f"no intact checkpoint to resume from in {folder}: " + " | ".join(skipped))
