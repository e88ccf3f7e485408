"""``tools/make_dataset.py``: write the built-in long-tailed shapes dataset."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from detimb.cli.common import run_cli
from detimb.data.synthetic import DEFAULT_TRAIN_COUNTS, DEFAULT_VAL_COUNTS, ShapesSpec, make_shapes_dataset


def dataset_parser(description: str, out: str, train_counts: tuple[int, ...], val_counts: tuple[int, ...]
                   ) -> argparse.ArgumentParser:
    """The options every built-in dataset writer takes: output folder, per-class counts, seed."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", default=out, help=f"output folder (default: {out})")
    parser.add_argument("--train-counts", type=int, nargs="+", default=list(train_counts))
    parser.add_argument("--val-counts", type=int, nargs="+", default=list(val_counts))
    parser.add_argument("--seed", type=int, default=0)
    return parser


def report(paths: dict[str, Path]) -> None:
    for split, path in paths.items():
        print(f"{split}: {path}")


def write(argv: list[str] | None) -> None:
    parser = dataset_parser("Write detimb's built-in long-tailed shapes dataset (COCO).", "data/shapes",
                            DEFAULT_TRAIN_COUNTS, DEFAULT_VAL_COUNTS)
    parser.add_argument("--image-size", type=int, default=128)
    args = parser.parse_args(argv)
    report(make_shapes_dataset(args.out, ShapesSpec(train_counts=tuple(args.train_counts),
                                                    val_counts=tuple(args.val_counts), image_size=args.image_size,
                                                    seed=args.seed)))


def main(argv: list[str] | None = None) -> int:
    return run_cli(lambda: write(argv))


if __name__ == "__main__":
    sys.exit(main())
