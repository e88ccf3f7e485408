"""``tools/rebalance.py``: under- and oversample a COCO dataset into a new one."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

from detimb.cli.common import run_cli
from detimb.data.coco_validate import validate_coco
from detimb.data.rebalance import apply_plan, class_counts_by_name, oversample_plan, undersample
from detimb.errors import DatasetError, DetimbError
from detimb.utils import atomic_write_json, is_whole_number


def parse_targets(text: str, categories: list[dict]) -> dict[int, int]:
    """``"car: 2000, truck: 500"`` -> {category id: count}."""
    try:
        raw = yaml.safe_load("{" + text + "}")
    except yaml.YAMLError as err:
        raise DatasetError(f"--target: cannot parse {text!r}; write 'name: count, name: count'") from err
    if not isinstance(raw, dict):
        raise DatasetError(f"--target: cannot parse {text!r}; write 'name: count, name: count'")
    by_name = {c["name"]: c["id"] for c in categories}
    out = {}
    for name, count in raw.items():
        if str(name) not in by_name:
            raise DatasetError(f"--target: '{name}' is not a category; categories: {', '.join(by_name)}"
                               + (" (write 'name: count': a colon and a space)" if "=" in str(name) or ":" in str(name)
                                  else ""))
        if not is_whole_number(count, at_least=0):
            raise DatasetError(f"--target: {name}'s count must be a whole number >= 0, got {count!r}")
        out[by_name[str(name)]] = count
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Rebalance a COCO dataset; the input is never modified.")
    p.add_argument("--coco", required=True, help="input COCO annotation file")
    p.add_argument("--out", required=True, help="output COCO annotation file (must differ from --coco)")
    p.add_argument("--images", help="image folder of --coco (needed with --transforms)")
    p.add_argument("--out-images", help="image folder for the output, when duplicates are augmented")
    goal = p.add_mutually_exclusive_group()
    goal.add_argument("--target", help="per-class instance targets, e.g. 'car: 2000, truck: 500'")
    goal.add_argument("--max-ratio", type=float, help="raise every class to at least (largest count) / RATIO")
    p.add_argument("--drop-empty", type=float, default=0.0, help="fraction of images without annotations to drop")
    p.add_argument("--drop-majority-only", type=float, default=0.0,
                   help="fraction of images holding only head classes to drop")
    p.add_argument("--transforms",
                   help="albumentations ops for duplicates, YAML, e.g. '[{type: HorizontalFlip, p: 0.5}]'")
    p.add_argument("--max-duplicates", type=int, help="cap on added images (default 10x the images)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--strict", action="store_true", help="defects that would be repaired in memory are errors")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_cli(lambda: rebalance(args))


def rebalance(args: argparse.Namespace) -> None:
    staging: Path | None = None
    try:
        if args.seed < 0:
            raise DetimbError(f"--seed must be an integer >= 0, got {args.seed}")
        if Path(args.out).resolve() == Path(args.coco).resolve():
            raise DetimbError("--out must differ from --coco: the input is never modified in place")
        records = validate_coco(args.coco, args.images, check_files=args.images is not None, strict=args.strict)
        for message in records.warnings:
            print(f"warning: {message}", file=sys.stderr)
        coco = records.data
        rng = np.random.default_rng(args.seed)
        before = class_counts_by_name(coco)
        work = undersample(coco, rng, args.drop_empty, args.drop_majority_only)
        plan: list[int] = []
        if args.target or args.max_ratio is not None:
            targets = parse_targets(args.target, coco["categories"]) if args.target else None
            plan = oversample_plan(work, rng, targets, args.max_ratio, args.max_duplicates)
        transforms = yaml.safe_load(args.transforms) if args.transforms else []
        out_images = None
        if transforms and args.out_images:  # written to a staging folder, renamed into place on success
            final = Path(args.out_images)
            if final.exists() and any(final.iterdir()):
                raise DetimbError(f"--out-images {final} is not empty. Fix: give a new or empty folder")
            final.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
            out_images = staging
        result = apply_plan(work, plan, args.images, out_images, transforms, args.seed)
        if staging is not None:
            if final.exists():
                final.rmdir()
            staging.rename(final)
            staging = None
        atomic_write_json(args.out, result)
    except DetimbError:  # named already (several are ValueErrors too)
        raise
    except ValueError as err:  # albumentations' and YAML's refusals of --transforms
        raise DetimbError(f"--transforms: {err}") from err
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    after = class_counts_by_name(result)
    print(f"{'class':<20}{'before':>10}{'after':>10}")
    for name in sorted(before, key=lambda n: -before[n]):
        print(f"{name[:19]:<20}{before[name]:>10}{after[name]:>10}")
    ratio = lambda counts: max(counts, default=0) / min((n for n in counts if n), default=1)  # noqa: E731
    dropped = len(coco["images"]) - len(work["images"])
    print(f"\nimages {len(coco['images'])} -> {len(result['images'])} ({dropped} dropped, {len(plan)} duplicated);"
          f" imbalance ratio {ratio(before.values()):.1f} -> {ratio(after.values()):.1f}")
    print(f"written to {args.out}")


if __name__ == "__main__":
    sys.exit(main())
