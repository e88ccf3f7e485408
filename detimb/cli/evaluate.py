"""``tools/eval.py``: score a checkpoint or a COCO results file on the config's val split."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from detimb.config import load_config, to_dict
from detimb.data.coco import CocoDetection
from detimb.data.coco_validate import read_coco_json, validate_results
from detimb.data.label_map import LabelMap
from detimb.data.loader import build_loader, build_val_dataset
from detimb.engine.checkpoint import load_checkpoint, load_model_state
from detimb.engine.coco_eval import class_frequencies, format_table
from detimb.engine.priors import apply_priors
from detimb.engine.tasks import evaluate_and_write, make_task
from detimb.errors import DatasetError, DetimbError
from detimb.models.builder import is_segmentation


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
        cfg = load_config(args.config, args.cfg_options)
        train_path = Path(cfg.data.train.ann_file)
        train_freq = class_frequencies(read_coco_json(train_path)) if train_path.is_file() else None
        if args.checkpoint:
            state = load_checkpoint(args.checkpoint)
            label_map = LabelMap.from_dict(state["label_map"])
            task = make_task(cfg)
            val_set = build_val_dataset(cfg.data, label_map, is_segmentation(cfg.model))
            model = task.build_model(label_map, None)
            load_model_state(model, state, to_dict(cfg.model), label_map.num_classes, args.checkpoint)
            apply_priors(model, cfg, state.get("priors", {}), set_bias=False)
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
            loader = build_loader(val_set, cfg.data.val_batch_size, cfg.data.num_workers, 0, 1, 0)
            out = Path(args.out or Path(args.checkpoint).parent / "eval")
            reports = task.evaluate(model.to(device), loader, device, label_map, train_freq, out, amp=False,
                                    progress=True, error_analysis=True)
            print(task.format(reports))
            print(f"\nwritten to {out}")
            return 0
        if is_segmentation(cfg.model):
            raise DetimbError("--results scores COCO detection results; evaluate a segmentation model with"
                              " --checkpoint")
        val = CocoDetection(cfg.data.val.ann_file, cfg.data.val.img_dir)
        for message in val.records.warnings:
            print(f"note: {message}", file=sys.stderr)
        label_map = val.label_map
        results: dict[str, list] = {"bbox": [], "segm": []}
        for name in args.results:  # every file checked before anything is scored or written
            path = Path(name)
            if not path.is_file():
                raise DetimbError(f"--results: no file at {path}")
            try:
                records = json.loads(path.read_text())
            except json.JSONDecodeError as err:
                raise DatasetError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from err
            results[validate_results(path, records, val.records.data)] = records
        out = Path(args.out or Path(args.results[0]).parent / "eval")
        with_masks = bool(results["segm"])
        reports = evaluate_and_write(val.coco, results, label_map, train_freq, cfg.evaluation, out, with_masks,
                                     error_analysis=True)
        print("\n\n".join(format_table(r) for r in reports.values()))
        print(f"\nwritten to {out}")
    except (DetimbError, FileNotFoundError, json.JSONDecodeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
