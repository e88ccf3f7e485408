"""Ctrl-C during training: stop at the end of the current iteration, with a checkpoint.

A ``KeyboardInterrupt`` raised inside ``backward()`` or the optimizer step would leave the
model updated but the iteration not counted, so a resumed run would differ from one never
interrupted. ``StopAtIterationEnd`` turns the first SIGINT into a request the training loop
reads after each completed iteration; the loop then saves ``last.pth`` and raises
``TrainingInterrupted``, which names the resume command. A second Ctrl-C interrupts at once.
Only a single process installs it (under torchrun the ranks would stop at different
iterations and wait on each other).
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType, TracebackType

from detimb.errors import DetimbError

logger = logging.getLogger(__name__)


class TrainingInterrupted(DetimbError, KeyboardInterrupt):
    """Training stopped by Ctrl-C after a completed iteration, with its checkpoint written."""


class StopAtIterationEnd:
    """While entered (in the main thread of a single process), the first SIGINT sets
    ``requested``; the previous handler is restored on exit."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.requested = False
        self._previous: signal.Handlers | None = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True
        logger.warning("Ctrl-C: stopping after this iteration, with a checkpoint (Ctrl-C again to stop at once)")

    def __enter__(self) -> StopAtIterationEnd:
        if self.enabled:
            self._previous = signal.signal(signal.SIGINT, self._handle)  # type: ignore[assignment]
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self.enabled:
            signal.signal(signal.SIGINT, self._previous)
