"""Small helpers shared across layers: atomic writes, outputs kept inside their folder, the
one low-level read of a ``.pth`` file, the machine a measurement ran on."""

from __future__ import annotations

import json
import os
import pickle
import platform
import tempfile
import zipfile
from pathlib import Path
from collections.abc import Iterable
from typing import Any, Callable

import torch

from detimb.errors import CheckpointError, DatasetError, InputError


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then rename onto ``path``: readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)

    atomic_write(path, write)


def atomic_write_json(path: str | os.PathLike[str], data: Any, indent: int | None = None) -> None:
    atomic_write_text(path, json.dumps(data, indent=indent))


def inside(root: str | os.PathLike[str], relative: str, what: str) -> Path:
    """``root / relative``, refusing a path that resolves outside ``root`` (``../x.png``,
    an absolute name): every tool writes only inside its output folder."""
    base = Path(root).resolve()
    target = (base / relative).resolve()
    if not target.is_relative_to(base):
        raise DatasetError(f"{what}: the file name {relative!r} would be written outside {base}. Fix: use names"
                           " relative to the image folder, without '..'")
    return target


def not_an_input(output: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str] | None], what: str) -> Path:
    """``output``, refused by name when it is one of the tool's ``inputs`` (the same file,
    through any path or link) or a folder: no tool writes over what it reads."""
    target = Path(output)
    if target.is_dir():
        raise InputError(f"{what}: {target} is a folder; give the file to write")
    resolved = target.resolve()
    for given in inputs:
        if given is not None and Path(given).exists() and Path(given).resolve() == resolved:
            raise InputError(f"{what}: {target} is an input of this command ({given}); writing there would replace"
                             " it. Fix: give another output path")
    return target


def cache_dir() -> Path:
    """Where detimb caches what it computed once (image checks, sampling-free priors):
    ``DETIMB_CACHE_DIR``, else ``$XDG_CACHE_HOME/detimb``, else ``~/.cache/detimb``."""
    if os.environ.get("DETIMB_CACHE_DIR"):
        return Path(os.environ["DETIMB_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "detimb"


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
        if not head.startswith((b"\x80", b"PK")):  # torch's own message here is about weights_only: misleading
            raise CheckpointError(f"{path}: not a checkpoint (it starts with {head!r}, where a file torch.save"
                                  " wrote starts as a zip archive or a pickle). Fix: give a file written by"
                                  " torch.save") from err
        if "Weights only load failed" not in str(err):
            raise CheckpointError(f"{path}: not a checkpoint ({str(err).splitlines()[0][:200]}). Fix: give a file"
                                  " written by torch.save") from err
        raise CheckpointError(f"{path}: holds objects other than tensors and plain values, which could run code when"
                              " loaded, so detimb refuses it. Do not load it with weights_only=False unless you"
                              " trust where it came from; if you do, re-save its state_dict() with torch.save") from err
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, zipfile.BadZipFile) as err:
        raise CheckpointError(f"{path}: not a readable checkpoint, the file is torn or of another kind"
                              f" ({str(err).splitlines()[0][:120]}). Fix: use an earlier checkpoint") from err


def is_whole_number(value: object, *, at_least: int) -> bool:
    """An ``int`` (not a ``bool``) >= ``at_least``: a count, a seed, a size in pixels."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= at_least


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity where the OS tells it, else all)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` reports, else ``"cpu"``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"
