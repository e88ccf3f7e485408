"""``tools/sweep.py`` / ``detimb-sweep``: measure remedies on your data and write the winner's config."""

from __future__ import annotations

import argparse
import sys

from detimb.cli.common import run_cli
from detimb.sweeps.remedies import REMEDIES
from detimb.sweeps.run import BACKENDS, OBJECTIVES, sweep


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Which remedy helps this dataset? Train each remedy on your config,"
                                            " paired by seed with the baseline; choose on half of the validation"
                                            " images, confirm on the other half; write SWEEP.md and recommended.yaml.")
    p.add_argument("--config", required=True, help="your config (data and model): a file or a packaged name")
    p.add_argument("--remedies", nargs="+", default=["auto"],
                   help=f"'auto' (chosen from the training set's profile) or names: {', '.join(REMEDIES)};"
                        " or your own: a .yaml file of the config keys it changes")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    length = p.add_mutually_exclusive_group()
    length.add_argument("--iters", type=int, help="iterations per run (default: the config's max_iters)")
    length.add_argument("--budget-minutes", type=float, help="fit the whole sweep in this many minutes (a short"
                                                             " timed run sets the iterations)")
    p.add_argument("--workers", type=int, default=1, help="runs at once; the cores are split between them")
    p.add_argument("--out", required=True, help="the sweep's folder (rerun with the same settings to continue)")
    p.add_argument("--backend", choices=BACKENDS, default="local")
    p.add_argument("--ray-address", help="with --backend ray: the cluster (default: a local one)")
    p.add_argument("--gpus-per-run", type=float, default=0.0, help="with --backend ray")
    p.add_argument("--test", help="a held-out COCO file for the headline figure, instead of half the validation set")
    p.add_argument("--test-images", help="the folder --test's file names are relative to")
    p.add_argument("--objective", choices=OBJECTIVES, default="auto",
                   help="the number the winner is chosen by (auto: APr, else APc, else mAP; the -fixed ones:"
                        " AP-fixed, no per-image cap)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap draws of the validation images")
    p.add_argument("--max-remedies", type=int, default=6, help="with auto: the most remedies measured")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE", help="overrides of your config")
    return p.parse_args(argv)


def sweep_command(args: argparse.Namespace) -> None:
    result = sweep(args.config, out=args.out, remedies=args.remedies, seeds=args.seeds, iters=args.iters,
                   budget_minutes=args.budget_minutes, workers=args.workers, backend=args.backend,
                   test=args.test, test_images=args.test_images, objective=args.objective, bootstrap=args.bootstrap,
                   max_remedies=args.max_remedies, overrides=args.cfg_options, split_seed=args.split_seed,
                   ray_address=args.ray_address, gpus_per_run=args.gpus_per_run, progress=not args.no_progress)
    print(result.verdict)
    print(f"\nreport: {result.report}\nrecommended config: {result.out_dir / 'recommended.yaml'}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_cli(lambda: sweep_command(args))


if __name__ == "__main__":
    sys.exit(main())
