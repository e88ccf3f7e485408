"""Where a sweep's runs execute: a local pool of processes, or Ray tasks on a cluster.

Each run is ``python -m detimb.cli.sweep_worker RUN_FOLDER`` in a process of its own, with
``threads`` CPU threads (the cores split between the runs at once). A run that fails
leaves ``failed.json`` with its exit code and the end of its error output; the sweep goes
on. With Ray (the ``ray`` extra) each run is a task asking ``num_cpus=threads`` and
``num_gpus=gpus``, so a cluster of GPU machines runs the same sweep; the run folders must
be on storage every node sees.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from detimb.data.loader import CPU_SHARE_VARIABLE
from detimb.optional import require_extra
from detimb.sweeps.plan import Run
from detimb.utils import atomic_write_json

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
ERROR_TAIL = 4000


@dataclass(frozen=True)
class Outcome:
    """How a run ended: exit code, seconds, and the end of its error output when it failed."""

    code: int
    seconds: float
    error: str = ""


def execute(folder: str, threads: int) -> Outcome:
    """Run one sweep run to its end in a child process (what the pool and Ray tasks call)."""
    # the run's share of the cores, for its threads and for its loader's ``auto`` workers
    env = {**os.environ, **{name: str(threads) for name in (*THREAD_VARIABLES, CPU_SHARE_VARIABLE)}}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "detimb.cli.sweep_worker", folder], env=env, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        tail = (done.stderr or done.stdout)[-ERROR_TAIL:]
        atomic_write_json(Path(folder) / "failed.json", {"code": done.returncode, "error": tail}, indent=2)
        return Outcome(done.returncode, seconds, tail)
    return Outcome(0, seconds)


class Backend(ABC):
    """Runs a list of sweep runs, calling ``finished`` as each ends."""

    @abstractmethod
    def run_all(self, runs: list[Run], finished: Callable[[Run, Outcome], None]) -> None:
        ...


class LocalBackend(Backend):
    """``workers`` runs at a time on this machine, ``threads`` threads each."""

    def __init__(self, *, workers: int, threads: int) -> None:
        self.workers, self.threads = workers, threads

    def run_all(self, runs: list[Run], finished: Callable[[Run, Outcome], None]) -> None:
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            futures = {pool.submit(execute, str(run.folder), self.threads): run for run in runs}
            for future in as_completed(futures):
                finished(futures[future], future.result())


class RayBackend(Backend):
    """Each run a Ray task with ``threads`` CPUs and ``gpus`` GPUs, on the cluster at
    ``address`` (None: the one this process is connected to, or a new local one)."""

    def __init__(self, *, threads: int, gpus: float = 0.0, address: str | None = None) -> None:
        require_extra("ray", "--backend ray", ("ray",))
        self.threads, self.gpus, self.address = threads, gpus, address

    def run_all(self, runs: list[Run], finished: Callable[[Run, Outcome], None]) -> None:
        import ray  # the ray extra, checked in __init__

        if not ray.is_initialized():
            if self.address is None:  # a local Ray starts its workers at nice 15: the runs are the work here
                os.environ.setdefault("RAY_worker_niceness", "0")
            ray.init(address=self.address, log_to_driver=False)
        task = ray.remote(execute).options(num_cpus=self.threads, num_gpus=self.gpus)
        pending = {task.remote(str(run.folder), self.threads): run for run in runs}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                finished(pending.pop(ref), ray.get(ref))
