"""Where a training iteration's time goes: waiting for the loader, or stepping.

The wait is the host's time blocked on the loader's next batch (detectron2's and
mmdetection's ``data_time``); ``sec_per_iter`` is the whole iteration's wall time. Both are
means over a log interval. On CUDA the step runs asynchronously, so a step's GPU work may
overlap the next wait; a wait that stays long still means the GPU ran out of work.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

WAIT_WARNING_FRACTION = 0.10  # the share of wall time spent waiting that earns one warning


@dataclass(frozen=True)
class IntervalTimes:
    """Means over one log interval, in seconds per iteration."""

    sec_per_iter: float
    data_time: float

    @property
    def waiting_fraction(self) -> float:
        return self.data_time / self.sec_per_iter if self.sec_per_iter > 0 else 0.0


class StepClock:
    """Times the loader's waits (``batches``) and each log interval (``lap``); ``advice``
    words one warning per run when the wait passes 10% of an interval's wall time. The
    first interval is left out of the warning: it holds the loader workers' start-up."""

    def __init__(self) -> None:
        self._start = time.perf_counter()
        self._waited = 0.0
        self._laps = 0
        self._warned = False

    def batches(self, loader: Iterable[T]) -> Iterator[T]:
        """``loader``'s batches, timing how long each took to arrive."""
        iterator = iter(loader)
        while True:
            asked = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                return
            self._waited += time.perf_counter() - asked
            yield batch

    def lap(self, iterations: int) -> IntervalTimes:
        """The means over the ``iterations`` since the last lap; starts the next interval."""
        now = time.perf_counter()
        n = max(1, iterations)
        times = IntervalTimes((now - self._start) / n, self._waited / n)
        self._start, self._waited = now, 0.0
        self._laps += 1
        return times

    def advice(self, times: IntervalTimes, last_iteration: int, num_workers: int) -> str | None:
        """One warning, the first time (after the first interval) the wait passes 10%."""
        if self._warned or self._laps < 2 or times.waiting_fraction <= WAIT_WARNING_FRACTION:
            return None
        self._warned = True
        return (f"up to iteration {last_iteration} the training step waited for data {times.waiting_fraction:.0%}"
                f" of the time ({1000 * times.data_time:.0f} ms of {1000 * times.sec_per_iter:.0f} ms per"
                f" iteration). Fix: raise data.num_workers (now {num_workers}), or set data.cache: ram to keep"
                " decoded images between epochs and runs")
