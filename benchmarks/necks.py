"""Step time and parameter count of each neck relative to FPN, on the demo detector.

All variants hold the same backbone and head sizes (configs/necks/*.yaml) and train on
the same batch; their steps are timed in alternating rounds in one process.

    python benchmarks/necks.py [--rounds 10] [--steps 8] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.train_step import cpu_name, time_steps  # noqa: E402
from detimb.config import load_config  # noqa: E402
from detimb.data.coco import CocoDetection, collate  # noqa: E402
from detimb.data.synthetic import make_shapes_dataset  # noqa: E402
from detimb.models import build_detector  # noqa: E402

VARIANTS = ("fpn", "panet", "panet_afp", "bfp", "bfp_panet")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out")
    args = p.parse_args()
    device = torch.device(args.device)
    data = Path(tempfile.mkdtemp()) / "shapes"
    make_shapes_dataset(data)
    paths = [f"data.train.ann_file={data}/annotations/train.json", f"data.train.img_dir={data}/train",
             f"data.val.ann_file={data}/annotations/val.json", f"data.val.img_dir={data}/val"]
    models, optims, params = {}, {}, {}
    batch = None
    for name in VARIANTS:
        cfg = load_config(REPO / "configs" / "necks" / f"{name}.yaml", paths)
        if batch is None:
            ds = CocoDetection(cfg.data.train.ann_file, cfg.data.train.img_dir)
            images, targets = collate([ds[i] for i in range(cfg.data.batch_size)])
            batch = ([im.to(device) for im in images], [{k: v.to(device) for k, v in t.items()} for t in targets])
        torch.manual_seed(0)
        models[name] = build_detector(cfg.model, ds.label_map).to(device).train()
        optims[name] = torch.optim.SGD(models[name].parameters(), lr=1e-4, momentum=0.9)
        params[name] = sum(p.numel() for p in models[name].parameters())
        time_steps(models[name], optims[name], *batch, 3, device)
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for r in range(args.rounds):
        for name in VARIANTS if r % 2 == 0 else VARIANTS[::-1]:
            times[name].append(time_steps(models[name], optims[name], *batch, args.steps, device))
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = {name: {"median_step_s": med[name], "step_ratio_vs_fpn": med[name] / med["fpn"],
                   "params": params[name], "params_ratio_vs_fpn": params[name] / params["fpn"]} for name in VARIANTS}
    result = {"benchmark": "necks", "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
              "threads": torch.get_num_threads(), "rounds": args.rounds, "steps_per_round": args.steps,
              "torch": torch.__version__, "variants": rows}
    print(json.dumps(result, indent=2))
    out = Path(args.out or REPO / "benchmarks" / "results" / f"necks_{device.type}.json")
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
