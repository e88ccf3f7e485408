"""``tools/analyze.py``: the class and box statistics of a COCO dataset, as JSON and PNGs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from detimb.data.coco_validate import validate_coco
from detimb.data.statistics import GROUP_BY, box_sides, dataset_stats, write_plots
from detimb.cli.common import run_cli
from detimb.utils import atomic_write_json


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Report a COCO dataset's class imbalance.")
    p.add_argument("--coco", required=True, help="COCO annotation file")
    p.add_argument("--out", required=True, help="report folder: stats.json and PNGs")
    p.add_argument("--compare", help="a second COCO file (e.g. after merging or rebalancing) to compare with")
    p.add_argument("--log", action="store_true", help="log scale for instance counts")
    p.add_argument("--thresholds", type=int, nargs=2, default=[10, 100], metavar=("RARE", "COMMON"),
                   help="frequency groups: rare <= RARE < common <= COMMON < frequent (default 10 100)")
    p.add_argument("--group-by", choices=GROUP_BY, default="images",
                   help="count images per class (LVIS's groups) or instances (for a few large scenes)")
    p.add_argument("--strict", action="store_true", help="defects that would be repaired in memory are errors")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_cli(lambda: analyze(args))


def analyze(args: argparse.Namespace) -> None:
    records = validate_coco(args.coco, None, strict=args.strict)
    coco = records.data
    stats = {**dataset_stats(coco, tuple(args.thresholds), args.group_by), "defects_repaired": records.repairs}
    other = None
    if args.compare:
        compared = validate_coco(args.compare, None, strict=args.strict)
        other = {**dataset_stats(compared.data, tuple(args.thresholds), args.group_by),
                 "defects_repaired": compared.repairs}
    notes = [n for n in (stats["group_note"], other["group_note"] if other else None) if n]
    for message in records.warnings + (compared.warnings if args.compare else []) + notes:
        print(f"warning: {message}", file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "stats.json", {**stats, **({"compare": other} if other else {})}, indent=2)
    plots = write_plots(stats, str(out), args.log, other, (Path(args.coco).name, Path(args.compare or "").name),
                        box_sides(coco))
    print(f"{'class':<20}{'group':>10}{'images':>8}{'instances':>11}{'share':>8}{'small':>7}{'medium':>8}{'large':>7}")
    for c in sorted(stats["classes"], key=lambda c: -c["instances"]):
        s = c["sizes"]
        print(f"{c['name'][:19]:<20}{c['group']:>10}{c['images']:>8}{c['instances']:>11}{c['share']:>8.3f}"
              f"{s['small']:>7}{s['medium']:>8}{s['large']:>7}")
    print(f"\n{stats['num_images']} images ({stats['empty_image_share']:.1%} empty), imbalance ratio "
          f"{stats['imbalance_ratio']:.1f}; head: {', '.join(stats['head_classes'])}; tail (<1%): "
          f"{', '.join(stats['tail_classes']) or '-'}")
    print(f"written to {out}: stats.json, {', '.join(plots)}")


if __name__ == "__main__":
    sys.exit(main())
