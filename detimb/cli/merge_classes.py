"""``tools/merge_classes.py``: merge and drop COCO categories into a new annotation file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from detimb.cli.common import run_cli
from detimb.data.class_merge import ClassMapping, merge_classes
from detimb.data.coco_validate import validate_coco
from detimb.errors import DetimbError
from detimb.utils import atomic_write_json


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Merge and drop COCO categories; the input file is never modified.")
    p.add_argument("--coco", required=True, help="input COCO annotation file")
    p.add_argument("--map", required=True, help="YAML with 'map' (source name/id -> target name) and 'drop'")
    p.add_argument("--out", required=True, help="output COCO annotation file (must differ from --coco)")
    p.add_argument("--strict", action="store_true", help="defects that would be repaired in memory are errors")
    args = p.parse_args(argv)
    return run_cli(lambda: merge(args))


def merge(args: argparse.Namespace) -> int | None:
    if Path(args.out).resolve() == Path(args.coco).resolve():
        raise DetimbError("--out must differ from --coco: the input is never modified in place")
    records = validate_coco(args.coco, None, strict=args.strict)
    for message in records.warnings:
        print(f"warning: {message}", file=sys.stderr)
    coco = records.data
    merged, counts = merge_classes(coco, ClassMapping.from_yaml(args.map), args.map)
    atomic_write_json(args.out, merged)
    print(f"{'before':<24}{'instances':>10}")
    for name, n in sorted(counts["before"].items(), key=lambda kv: -kv[1]):
        print(f"{name:<24}{n:>10}")
    print(f"\n{'after':<24}{'instances':>10}")
    for name, n in sorted(counts["after"].items(), key=lambda kv: -kv[1]):
        print(f"{name:<24}{n:>10}")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    sys.exit(main())
