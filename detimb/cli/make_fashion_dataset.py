"""``tools/make_fashion_dataset.py``: write the long-tailed Fashion-MNIST canvas dataset."""

from __future__ import annotations

import argparse
import sys

from detimb.cli.common import run_cli
from detimb.data.fashion import DEBIAN_DIR, DEFAULT_TRAIN_COUNTS, DEFAULT_VAL_COUNTS, FashionSpec, make_fashion_dataset


def main(argv: list[str] | None = None) -> int:
    return run_cli(lambda: write(argv))


def write(argv: list[str] | None) -> None:
    p = argparse.ArgumentParser(description="Write the long-tailed Fashion-MNIST canvas dataset (COCO).")
    p.add_argument("--source", default=DEBIAN_DIR, help=f"folder of the IDX files (default {DEBIAN_DIR})")
    p.add_argument("--out", default="data/fashion")
    p.add_argument("--train-counts", type=int, nargs="+", default=list(DEFAULT_TRAIN_COUNTS))
    p.add_argument("--val-counts", type=int, nargs="+", default=list(DEFAULT_VAL_COUNTS))
    p.add_argument("--canvas-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    spec = FashionSpec(train_counts=tuple(args.train_counts), val_counts=tuple(args.val_counts),
                       canvas_size=args.canvas_size, seed=args.seed)
    for split, path in make_fashion_dataset(args.out, args.source, spec).items():
        print(f"{split}: {path}")


if __name__ == "__main__":
    sys.exit(main())
