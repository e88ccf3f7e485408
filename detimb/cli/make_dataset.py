"""``tools/make_dataset.py``: write the built-in long-tailed shapes dataset."""

from __future__ import annotations

import argparse
import sys

from detimb.cli.common import run_cli
from detimb.data.synthetic import DEFAULT_TRAIN_COUNTS, DEFAULT_VAL_COUNTS, ShapesSpec, make_shapes_dataset


def main(argv: list[str] | None = None) -> int:
    return run_cli(lambda: write(argv))


def write(argv: list[str] | None) -> None:
    parser = argparse.ArgumentParser(description="Write detimb's built-in long-tailed shapes dataset (COCO).")
    parser.add_argument("--out", default="data/shapes", help="output folder (default: data/shapes)")
    parser.add_argument("--train-counts", type=int, nargs="+", default=list(DEFAULT_TRAIN_COUNTS))
    parser.add_argument("--val-counts", type=int, nargs="+", default=list(DEFAULT_VAL_COUNTS))
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    spec = ShapesSpec(train_counts=tuple(args.train_counts), val_counts=tuple(args.val_counts),
                      image_size=args.image_size, seed=args.seed)
    paths = make_shapes_dataset(args.out, spec)
    for split, path in paths.items():
        print(f"{split}: {path}")


if __name__ == "__main__":
    sys.exit(main())
