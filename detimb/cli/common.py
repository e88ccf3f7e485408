"""What every command-line tool shares: errors and exit codes, and where log lines go.

Library code never prints: it logs to the ``detimb`` logger or returns a report. A tool's
``main`` calls ``run_cli`` once, which sends those log lines to the terminal's standard
error and turns a ``DetimbError`` (a bad file, record, option or checkpoint) into one
``error: ...`` line and exit code 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import sys
from typing import Callable

from detimb.errors import DetimbError, user_message

EXIT_USER_ERROR = 2


class _CurrentStderr(logging.Handler):
    """Writes each line to ``sys.stderr`` as it is at that moment (a test's captured stream too)."""

    def emit(self, record: logging.LogRecord) -> None:
        prefix = "warning: " if record.levelno >= logging.WARNING else ""
        print(prefix + record.getMessage(), file=sys.stderr)


def show_log_lines() -> None:
    """Route the ``detimb`` logger's INFO and above to standard error (once per process). The
    records still reach the root logger's handlers, which a tool's process does not have."""
    logger = logging.getLogger("detimb")
    if not any(isinstance(h, _CurrentStderr) for h in logger.handlers):
        logger.addHandler(_CurrentStderr())
    logger.setLevel(logging.INFO)


def run_cli(command: Callable[[], int | None]) -> int:
    """Run a tool's body: 0 when it returns None, its own code otherwise, 2 with the error's
    message on standard error when it raises a ``DetimbError``."""
    show_log_lines()
    try:
        code = command()
    except DetimbError as err:
        print(f"error: {user_message(err)}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0 if code is None else code
