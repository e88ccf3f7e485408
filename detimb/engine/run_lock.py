"""One training per run folder at a time, and no silent replacement of a finished run.

``RunLock`` holds ``<work_dir>/train.lock`` (pid, host, start time) while a run trains; a
second training into the same folder is refused by name. A lock whose process is gone
(same host, pid not running) is stale: it is replaced, and the log says so.
``check_fresh_folder`` refuses to start a new run over a folder whose ``last.pth`` holds
another run, unless the caller resumes it or asks to overwrite it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from detimb.errors import ConfigError, TrainingError

logger = logging.getLogger(__name__)

LOCK_NAME = "train.lock"
# with iter_*.pth: what a run leaves that another run must not be mixed with
RUN_FILES = ("last.pth", "best.pth", "metrics.jsonl")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


class RunLock:
    """``with RunLock(work_dir):`` the folder is this process's until the block ends."""

    def __init__(self, work_dir: Path) -> None:
        self.path = Path(work_dir) / LOCK_NAME
        self.mine = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}

    def _take(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            json.dump(self.mine, f)
        return True

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._take():
            return self
        try:
            holder = json.loads(self.path.read_text())
            pid, host, started = int(holder["pid"]), str(holder["host"]), str(holder.get("started", "?"))
        except (OSError, ValueError, KeyError, TypeError):
            pid, host, started = -1, self.mine["host"], "?"  # unreadable: a torn write, treated as stale
        if host == self.mine["host"] and (pid < 0 or not _alive(pid)):
            logger.warning(f"{self.path}: a stale lock (process {pid} on {host}, started {started}, is gone);"
                           " replaced")
            self.path.unlink(missing_ok=True)
            if self._take():
                return self
        raise TrainingError(f"{self.path.parent} is in use: a training (process {pid} on {host}, started {started})"
                            f" holds {self.path}. Fix: wait for it, give another --work-dir, or, if that process is"
                            f" gone, delete {self.path}")

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.path.unlink(missing_ok=True)


def check_fresh_folder(work_dir: Path, *, resuming: bool, overwrite: bool) -> None:
    """Refuse to start a new run where another run's checkpoints are, unless it is resumed
    or ``overwrite`` is given; with ``overwrite``, that run's checkpoints and log are removed
    first so the folder never mixes two runs."""
    last = Path(work_dir) / "last.pth"
    if resuming or not last.is_file():
        return
    if not overwrite:
        raise ConfigError(f"{work_dir} holds another run ({last}). Fix: --resume to continue it, --overwrite to"
                          " replace it, or another --work-dir")
    for path in [*(Path(work_dir) / name for name in RUN_FILES), *Path(work_dir).glob("iter_*.pth")]:
        path.unlink(missing_ok=True)
    logger.info(f"--overwrite: removed the previous run's checkpoints and metrics from {work_dir}")
