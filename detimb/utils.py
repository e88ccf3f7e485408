"""Small helpers shared across layers: atomic writes, and outputs kept inside their folder."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable


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
        from detimb.errors import DatasetError

        raise DatasetError(f"{what}: the file name {relative!r} would be written outside {base}. Fix: use names"
                           " relative to the image folder, without '..'")
    return target


def cache_dir() -> Path:
    """Where detimb caches what it computed once (image checks, sampling-free priors):
    ``DETIMB_CACHE_DIR``, else ``$XDG_CACHE_HOME/detimb``, else ``~/.cache/detimb``."""
    if os.environ.get("DETIMB_CACHE_DIR"):
        return Path(os.environ["DETIMB_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "detimb"
