"""Per-iteration metrics: ``metrics.jsonl`` (one JSON object per line) and TensorBoard events."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from detimb.optional import require_extra


class MetricsLog:
    """Appends rows to ``work_dir/metrics.jsonl`` and scalars to ``work_dir/tensorboard``.

    On resume from iteration ``start``, rows written after ``start`` by the interrupted run
    are dropped first, so the log reads as one uninterrupted run.
    """

    def __init__(self, work_dir: str | Path, start: int = 0, tensorboard: bool = True) -> None:
        self.path = Path(work_dir) / "metrics.jsonl"
        if start > 0 and self.path.exists():
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("iter", 0) <= start]
            self.path.write_text("".join(line + "\n" for line in kept))
        elif start == 0 and self.path.exists():
            self.path.unlink()
        self._file = open(self.path, "a")
        self._tb = None
        if tensorboard:
            try:
                require_extra("tensorboard", "TensorBoard logging")
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:  # optional: metrics.jsonl holds the same rows
                warnings.warn(f"{err}; skipping TensorBoard logging (metrics.jsonl is written)", stacklevel=2)
            else:
                self._tb = SummaryWriter(str(Path(work_dir) / "tensorboard"), purge_step=start + 1 if start else None)

    def write(self, row: dict[str, Any], prefix: str = "train") -> None:
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self._tb is not None:
            for key, value in row.items():
                if key != "iter" and isinstance(value, (int, float)) and value is not None:
                    self._tb.add_scalar(f"{prefix}/{key}", value, row["iter"])

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()
