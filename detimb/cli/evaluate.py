"""``tools/eval.py``: evaluate a checkpoint on the validation split, or score results files."""

from __future__ import annotations

import argparse
import sys

from detimb.cli.common import run_cli
from detimb.evaluation.calibration import GRIDS, METRICS
from detimb.evaluation.run import evaluate


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Evaluate a detimb checkpoint (detection or segmentation) or COCO"
                                            " detection results with pycocotools.")
    p.add_argument("--config", help="the config naming the val split (data.val); with --checkpoint, default: the"
                                     " config the checkpoint stores")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a detimb checkpoint (.pth) to run on the val split")
    src.add_argument("--results", nargs="+", help="COCO results JSON file(s): bbox, segm, or both")
    p.add_argument("--gt", help="with --results: the COCO file to score them against (default: the config's"
                                 " data.val; e.g. the scene file detimb-infer --coco was given)")
    p.add_argument("--out", help="output folder (default: <checkpoint folder>/eval or next to the results)")
    p.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA when available)")
    p.add_argument("--calibrate", choices=sorted(GRIDS),
                   help="fit a post-hoc calibration of the RoI classifier (NorCal's gamma, logit adjustment's tau) on"
                        " the val split, then evaluate with it; writes calibration.json/png and calibrated.pth. The"
                        " figure is optimistic (chosen on the images it scores): report on a held-out file")
    p.add_argument("--calibrate-metric", default="mAP", choices=list(METRICS),
                   help="what the calibration search maximises (default: %(default)s)")
    return p.parse_args(argv)


def evaluate_command(args: argparse.Namespace) -> None:
    result = evaluate(args.config, checkpoint=args.checkpoint, results=args.results, out=args.out,
                      overrides=args.cfg_options, calibrate=args.calibrate, calibrate_metric=args.calibrate_metric,
                      device=args.device, gt=args.gt)
    print(result.table)
    print(f"\nwritten to {result.out_dir}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_cli(lambda: evaluate_command(args))


if __name__ == "__main__":
    sys.exit(main())
