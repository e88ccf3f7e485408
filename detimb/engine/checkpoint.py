"""Checkpoints: written atomically, read back with ``weights_only=True``.

A checkpoint holds the model, optimizer, scheduler and AMP scaler states, the iteration,
every random number generator's state, the resolved config (YAML text) and the label
map, so ``--resume`` continues exactly where a run stopped and predictions keep the
class names of the data the model was trained on.
"""

from __future__ import annotations

import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn

from detimb.errors import CheckpointError
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
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A detimb checkpoint (a dict with ``model`` and ``label_map``), or a CheckpointError
    that says what is wrong with the file: missing, empty, torn, foreign, or holding code."""
    state = read_torch_file(path, map_location)
    if not isinstance(state, dict) or "model" not in state or "label_map" not in state:
        keys = sorted(state)[:5] if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path}: not a detimb checkpoint (no 'model' and 'label_map'; found {keys}). Fix: give"
                              " a last.pth/best.pth/iter_N.pth written by detimb training")
    return state


def read_torch_file(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(..., weights_only=True)`` with its failures named."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty (a write was interrupted?). Fix: use an earlier checkpoint")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        with open(path, "rb") as f:
            head = f.read(2)
        if "Weights only load failed" not in str(err) or not head.startswith((b"\x80", b"PK")):  # not a pickle or zip
            raise CheckpointError(f"{path}: not a checkpoint ({str(err).splitlines()[0][:120]}). Fix: give a file"
                                  " written by torch.save") from err
        raise CheckpointError(f"{path}: holds objects other than tensors and plain values, which could run code when"
                              " loaded, so detimb refuses it. Do not load it with weights_only=False unless you"
                              " trust where it came from; if you do, re-save its state_dict() with torch.save") from err
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"{path}: not a readable checkpoint, the file is torn or of another kind"
                              f" ({str(err).splitlines()[0][:120]}). Fix: use an earlier checkpoint") from err


MODEL_KEYS_THAT_SHAPE = ("type", "backbone", "neck", "anchors", "rpn", "roi_head", "retina_head", "head")


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): node}


def config_differences(state: dict[str, Any], model_cfg: dict[str, Any], num_classes: int) -> list[str]:
    """What differs between a checkpoint's stored model config and ``model_cfg`` (and classes)."""
    diffs = []
    saved_classes = len(state["label_map"].get("names", [])) + 1 if isinstance(state.get("label_map"), dict) else None
    if saved_classes is not None and saved_classes != num_classes:
        diffs.append(f"classes: {saved_classes - 1} in the checkpoint, {num_classes - 1} here")
    saved = (yaml.safe_load(state["config"]) or {}).get("model", {}) if isinstance(state.get("config"), str) else {}
    a = {k: v for k, v in _flat({k: saved.get(k) for k in MODEL_KEYS_THAT_SHAPE}).items()}
    b = {k: v for k, v in _flat({k: model_cfg.get(k) for k in MODEL_KEYS_THAT_SHAPE}).items()}
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            diffs.append(f"model.{key}: {a.get(key)!r} in the checkpoint, {b.get(key)!r} here")
    return diffs


def load_model_state(model: nn.Module, state: dict[str, Any], model_cfg: dict[str, Any], num_classes: int,
                     source: str | Path) -> None:
    """Load a detimb checkpoint's weights exactly (resume, inference); a mismatch is an error
    that lists how the checkpoint's config differs from this one (not a state-dict dump).
    Checkpoints of detimb's earlier backbone/neck layout are renamed to the current one."""
    from detimb.models.weights import rename_legacy

    try:
        model.load_state_dict(rename_legacy(state["model"])[0])
    except RuntimeError as err:
        diffs = config_differences(state, model_cfg, num_classes)
        detail = "; ".join(diffs[:8]) if diffs else str(err).splitlines()[0][:200]
        raise CheckpointError(f"{source}: the checkpoint was trained with another model config and does not fit this"
                              f" one: {detail}. Fix: use the config it was trained with (stored in the checkpoint and"
                              " in its run folder's config.yaml)") from err


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
