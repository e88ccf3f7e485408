"""``tools/eval.py``: evaluate a checkpoint on the validation split, or score results files."""

from __future__ import annotations

import argparse
import json
import sys

from detimb.errors import DetimbError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Evaluate a detimb checkpoint (detection or segmentation) or COCO"
                                            " detection results with pycocotools.")
    p.add_argument("--config", required=True, help="the config naming the val split (data.val)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a detimb checkpoint (.pth) to run on the val split")
    src.add_argument("--results", nargs="+", help="COCO results JSON file(s): bbox, segm, or both")
    p.add_argument("--out", help="output folder (default: <checkpoint folder>/eval or next to the results)")
    p.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        from detimb.api import evaluate

        out, text = evaluate(args.config, checkpoint=args.checkpoint, results=args.results, out=args.out,
                             overrides=args.cfg_options)
        print(text)
        print(f"\nwritten to {out}")
    except (DetimbError, FileNotFoundError, json.JSONDecodeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
