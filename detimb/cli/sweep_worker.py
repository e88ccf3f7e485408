"""``python -m detimb.cli.sweep_worker RUN_FOLDER``: one sweep run in its own process
(started by ``detimb-sweep``'s local pool and by its Ray tasks)."""

from __future__ import annotations

import sys
from pathlib import Path

from detimb.cli.common import run_cli
from detimb.sweeps.worker import run_one


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m detimb.cli.sweep_worker RUN_FOLDER", file=sys.stderr)
        return 2
    return run_cli(lambda: run_one(Path(args[0])))


if __name__ == "__main__":
    sys.exit(main())
