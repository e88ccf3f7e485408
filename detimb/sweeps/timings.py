"""How long a sweep spends training and outside it (planning, scoring, reports), over every
invocation, in ``timings.jsonl`` in the sweep's folder.

Each invocation is one row, named by the UTC time it started. The row is rewritten after
every run that finishes and once more when the sweep concludes, so a sweep that is stopped
(killed, crashed, its machine taken back) keeps the time it spent up to its last finished
run: what is lost is the unfinished runs' time, at most one run per worker. A row the
sweep did not conclude says so (``"concluded": false``). A row names the machine it was
measured on (CPU model and the cores the sweep could use), so a report that gathers sweeps run
on several machines says which seconds came from where.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from detimb.utils import atomic_write_text, cpu_name, usable_cores

TIMINGS_FILE = "timings.jsonl"
NOT_RECORDED = "not recorded"  # the machine of a row or run written before they named it
logger = logging.getLogger(__name__)


def invocation_name() -> str:
    """The name of this invocation's row: the UTC time it started."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def read_rows(log: Path) -> list[dict[str, Any]]:
    """The rows of ``log``; a line that is not a row of seconds (an edited or damaged file) is
    left out with a warning naming it: the file only counts time, no result depends on it."""
    if not log.is_file():
        return []
    rows, bad = [], []
    for number, line in enumerate(log.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if isinstance(row, dict) and all(isinstance(row.get(k), (int, float)) for k in ("training", "bookkeeping")):
            rows.append(row)
        else:
            bad.append(number)
    if bad:
        logger.warning(f"{log}: line(s) {', '.join(map(str, bad))} are not rows of seconds and are left out of the"
                       " sweep's time (and dropped when the file is next written)")
    return rows


def machine() -> str:
    """What this invocation's seconds are measured on: the CPU model and the cores it may use."""
    return f"{cpu_name()}, {usable_cores()} cores"


def machines(out_dir: Path) -> list[str]:
    """The machines the sweep's invocations ran on, in the order first seen; rows written before
    rows named their machine count as ``NOT_RECORDED``."""
    seen = [r.get("machine", NOT_RECORDED) for r in read_rows(out_dir / TIMINGS_FILE)]
    return list(dict.fromkeys(str(m) for m in seen))


def record(out_dir: Path, invocation: str, *, training_s: float, total_s: float, concluded: bool) -> None:
    """Write the row of ``invocation`` (``invocation_name()``), ``total_s`` seconds since it
    started of which ``training_s`` trained, replacing its earlier row and keeping the others."""
    row = {"started": invocation, "training": round(training_s, 1), "bookkeeping": round(total_s - training_s, 1),
           "concluded": concluded, "machine": machine()}
    log = out_dir / TIMINGS_FILE
    rows = read_rows(log)
    # rows written before rows had names have none: they are other invocations', kept as they are
    mine = [i for i, r in enumerate(rows) if r.get("started") == invocation]
    if mine:
        rows[mine[0]] = row
    else:
        rows.append(row)
    atomic_write_text(log, "".join(json.dumps(r) + "\n" for r in rows))


def totals(out_dir: Path) -> dict[str, float]:
    """The sweep's seconds over every invocation recorded: training, bookkeeping, its share;
    how many invocations, and how many of them stopped before concluding."""
    rows = read_rows(out_dir / TIMINGS_FILE)
    training, bookkeeping = sum(r["training"] for r in rows), sum(r["bookkeeping"] for r in rows)
    # rows without the flag were written only when a sweep concluded
    stopped = sum(1 for r in rows if not r.get("concluded", True))
    return {"training": round(training, 1), "bookkeeping": round(bookkeeping, 1), "invocations": len(rows),
            "stopped": stopped,
            "bookkeeping_share": round(bookkeeping / (training + bookkeeping), 4) if training + bookkeeping else 0.0}
