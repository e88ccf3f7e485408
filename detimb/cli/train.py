"""``tools/train.py``: train a detector from a config, evaluate it, write a run folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from detimb.cli.common import run_cli
from detimb.config import load_config, packaged_configs
from detimb.config.packaged import describe_config
from detimb.engine.run import default_work_dir, train
from detimb.errors import DetimbError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Train a detimb detector.")
    p.add_argument("--config", help="YAML config file, or a packaged config's name (detimb://demo/faster_rcnn_shapes)")
    p.add_argument("--list-configs", action="store_true", help="print the packaged configs' names and exit")
    p.add_argument("--work-dir", help="run folder (default: work_dir from the config, else work_dirs/<config name>)")
    p.add_argument("--resume", nargs="?", const="auto",
                   help="continue from a checkpoint (default: <work-dir>/last.pth)")
    p.add_argument("--load-from", help="initialise the model from a checkpoint's weights, starting at iteration 0")
    p.add_argument("--overwrite", action="store_true",
                   help="start a new run in a --work-dir that holds another (its checkpoints are removed first);"
                        " without it such a folder is refused unless --resume")
    p.add_argument("--amp", nargs="?", const="fp16", choices=["fp16", "bf16"],
                   help="mixed precision: fp16 (the default with a bare --amp; CUDA only) or bf16 (CUDA or CPU);"
                        " sets train.amp")
    p.add_argument("--seed", type=int, help="overrides train.seed")
    p.add_argument("--deterministic", action="store_true", help="deterministic algorithms (slower)")
    p.add_argument("--max-iters", type=int, help="overrides train.schedule.max_iters")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA when available; under torchrun each rank"
                                     " takes its LOCAL_RANK's GPU)")
    p.add_argument("--no-eval", action="store_true",
                   help="no evaluation during or after training (a smoke test; sets evaluation.enabled=false)")
    p.add_argument("--skip-image-check", action="store_true",
                   help="do not read every image before training (data.check_images=false)")
    p.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override config keys, e.g. model.roi_head.sampler.num=256 data.batch_size=4")
    args = p.parse_args(argv)
    if not args.config and not args.list_configs:
        p.error("--config is required (or --list-configs)")
    return args


def overrides_of(args: argparse.Namespace) -> list[str]:
    """``--cfg-options`` and the shorthand flags as ``key=value`` items."""
    overrides = list(args.cfg_options)
    if args.amp:
        overrides.append(f"train.amp={args.amp}")
    if args.no_eval:
        overrides.append("evaluation.enabled=false")
    if args.seed is not None:
        overrides.append(f"train.seed={args.seed}")
    if args.deterministic:
        overrides.append("train.deterministic=true")
    if args.skip_image_check:
        overrides.append("data.check_images=false")
    if args.max_iters is not None:
        overrides.append(f"train.schedule.max_iters={args.max_iters}")
    return overrides


def train_command(args: argparse.Namespace) -> None:
    if args.list_configs:
        names = packaged_configs()
        width = max(len(n) for n in names) + len("detimb://")
        print("\n".join(f"{'detimb://' + n:<{width}}  {describe_config(n)}".rstrip() for n in names))
        return
    overrides = overrides_of(args)
    cfg = load_config(args.config, overrides)  # a bad config is refused before the run folder is chosen
    work_dir = Path(args.work_dir) if args.work_dir else default_work_dir(args.config, cfg.work_dir)
    resume = None
    if args.resume:
        resume = work_dir / "last.pth" if args.resume == "auto" else Path(args.resume)
        if not resume.is_file():
            raise DetimbError(f"--resume: no checkpoint at {resume}")
    result = train(args.config, work_dir=work_dir, resume=resume, load_from=args.load_from,
                   progress=not args.no_progress, overrides=overrides, overwrite=args.overwrite,
                   device=args.device)
    print("\n" + result.table)
    print(f"\nrun folder: {result.work_dir}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_cli(lambda: train_command(args))


if __name__ == "__main__":
    sys.exit(main())
