"""``tools/make_fashion_dataset.py``: write the long-tailed Fashion-MNIST canvas dataset."""

from __future__ import annotations

import sys

from detimb.cli.common import run_cli
from detimb.cli.make_dataset import dataset_parser, report
from detimb.data.fashion import DEBIAN_DIR, DEFAULT_TRAIN_COUNTS, DEFAULT_VAL_COUNTS, FashionSpec, make_fashion_dataset


def write(argv: list[str] | None) -> None:
    parser = dataset_parser("Write the long-tailed Fashion-MNIST canvas dataset (COCO).", "data/fashion",
                            DEFAULT_TRAIN_COUNTS, DEFAULT_VAL_COUNTS)
    parser.add_argument("--source", default=DEBIAN_DIR, help=f"folder of the IDX files (default {DEBIAN_DIR})")
    parser.add_argument("--canvas-size", type=int, default=128)
    args = parser.parse_args(argv)
    report(make_fashion_dataset(args.out, args.source, FashionSpec(
        train_counts=tuple(args.train_counts), val_counts=tuple(args.val_counts), canvas_size=args.canvas_size,
        seed=args.seed)))


def main(argv: list[str] | None = None) -> int:
    return run_cli(lambda: write(argv))


if __name__ == "__main__":
    sys.exit(main())
