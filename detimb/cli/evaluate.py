"""``tools/eval.py``: score a checkpoint or a COCO results file on the config's val split."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from detimb.config import load_config
from detimb.data.coco import CocoDetection
from detimb.data.coco_validate import read_coco_json
from detimb.data.label_map import LabelMap
from detimb.data.loader import build_loader
from detimb.engine.checkpoint import load_checkpoint
from detimb.engine.coco_eval import class_frequencies, format_table
from detimb.engine.inference import predict
from detimb.engine.trainer import evaluate_and_write
from detimb.errors import DatasetError, DetimbError
from detimb.models.builder import build_detector, uses_masks


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Evaluate a detimb checkpoint or COCO results with pycocotools.")
    p.add_argument("--config", required=True, help="the config naming the val split (data.val)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a detimb checkpoint (.pth) to run on the val split")
    src.add_argument("--results", nargs="+", help="COCO results JSON file(s): bbox, segm, or both")
    p.add_argument("--out", help="output folder (default: <checkpoint folder>/eval or next to the results)")
    p.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE")
    return p.parse_args(argv)


def _results_kind(path: Path, records: list) -> str:
    if not isinstance(records, list):
        raise DatasetError(f"{path}: a COCO results file is a list of detections")
    if not records or "bbox" in records[0]:
        return "bbox"
    if "segmentation" in records[0]:
        return "segm"
    raise DatasetError(f"{path}: records have neither 'bbox' nor 'segmentation'")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = load_config(args.config, args.cfg_options)
        train_path = Path(cfg.data.train.ann_file)
        train_freq = class_frequencies(read_coco_json(train_path)) if train_path.is_file() else None
        if args.checkpoint:
            state = load_checkpoint(args.checkpoint)
            label_map = LabelMap.from_dict(state["label_map"])
            with_masks = uses_masks(cfg.model)
            val = CocoDetection(cfg.data.val.ann_file, cfg.data.val.img_dir, with_masks=False, label_map=label_map)
            model = build_detector(cfg.model, label_map)
            model.load_state_dict(state["model"])
            device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
            loader = build_loader(val, cfg.data.val_batch_size, cfg.data.num_workers, 0, 1, 0)
            results = predict(model.to(device), loader, device, label_map)
            out = Path(args.out or Path(args.checkpoint).parent / "eval")
        else:
            val = CocoDetection(cfg.data.val.ann_file, cfg.data.val.img_dir)
            label_map = val.label_map
            results = {"bbox": [], "segm": []}
            for name in args.results:
                path = Path(name)
                records = json.loads(path.read_text())
                results[_results_kind(path, records)] = records
            with_masks = bool(results["segm"])
            out = Path(args.out or Path(args.results[0]).parent / "eval")
        reports = evaluate_and_write(val.coco, results, label_map, train_freq, cfg.evaluation, out, with_masks)
        print("\n\n".join(format_table(r) for r in reports.values()))
        print(f"\nwritten to {out}")
    except (DetimbError, FileNotFoundError, json.JSONDecodeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
