"""``tools/train.py``: train a detector from a config, evaluate it, write a run folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from detimb.config import load_config, packaged_configs
from detimb.errors import DetimbError, user_message


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Train a detimb detector.")
    p.add_argument("--config", help="YAML config file, or a packaged config's name (detimb://demo/faster_rcnn_shapes)")
    p.add_argument("--list-configs", action="store_true", help="print the packaged configs' names and exit")
    p.add_argument("--work-dir", help="run folder (default: work_dir from the config, else work_dirs/<config name>)")
    p.add_argument("--resume", nargs="?", const="auto",
                   help="continue from a checkpoint (default: <work-dir>/last.pth)")
    p.add_argument("--load-from", help="initialise the model from a checkpoint's weights, starting at iteration 0")
    p.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    p.add_argument("--seed", type=int, help="overrides train.seed")
    p.add_argument("--deterministic", action="store_true", help="deterministic algorithms (slower)")
    p.add_argument("--max-iters", type=int, help="overrides train.schedule.max_iters")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--skip-image-check", action="store_true",
                   help="do not read every image before training (data.check_images=false)")
    p.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override config keys, e.g. model.roi_head.sampler.num=256 data.batch_size=4")
    args = p.parse_args(argv)
    if not args.config and not args.list_configs:
        p.error("--config is required (or --list-configs)")
    return args


def resolve(args: argparse.Namespace) -> tuple:
    overrides = list(args.cfg_options)
    if args.amp:
        overrides.append("train.amp=true")
    if args.seed is not None:
        overrides.append(f"train.seed={args.seed}")
    if args.deterministic:
        overrides.append("train.deterministic=true")
    if args.skip_image_check:
        overrides.append("data.check_images=false")
    if args.max_iters is not None:
        overrides.append(f"train.schedule.max_iters={args.max_iters}")
    cfg = load_config(args.config, overrides)
    as_kwargs = dict(item.split("=", 1) for item in overrides)  # raw YAML values, as typed
    work_dir = Path(args.work_dir or cfg.work_dir or Path("work_dirs") / Path(args.config).stem)
    resume = None
    if args.resume:
        resume = work_dir / "last.pth" if args.resume == "auto" else Path(args.resume)
        if not resume.is_file():
            raise DetimbError(f"--resume: no checkpoint at {resume}")
    return cfg, work_dir, resume, as_kwargs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list_configs:
        print("\n".join(f"detimb://{name}" for name in packaged_configs()))
        return 0
    try:
        _, work_dir, resume, overrides = resolve(args)
        from detimb.api import train

        train(args.config, work_dir=work_dir, resume=resume, load_from=args.load_from, progress=not args.no_progress,
              **overrides)
    except DetimbError as err:
        print(f"error: {user_message(err)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
