"""Host-synchronising tensor calls per training step: detimb's full step (the trainer's,
finiteness check and loss read-back included) against its torchvision twin's
forward + backward on the same batch, and the samplers and losses that sync more.

On a GPU each of these calls stalls the host until the device catches up: ``nonzero`` (and
one-argument ``torch.where``), boolean-mask indexing, ``item``, ``tolist``, and ``bool`` /
``int`` / ``float`` of a tensor. They are counted with a ``TorchFunctionMode`` (Python-level
calls; what torch does inside C++ is the same on both sides). The count does not depend on
the device, so the CPU gives the GPU's figure.

    python benchmarks/host_syncs.py [--out benchmarks/results/host_syncs.json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, shapes_overrides  # noqa: E402
from benchmarks.twins import torchvision_twin  # noqa: E402
from detimb.config import load_config  # noqa: E402
from detimb.data.coco import CocoDetection, collate  # noqa: E402
from detimb.engine.optim import build_optimizer, build_scheduler  # noqa: E402
from detimb.engine.trainer import Trainer  # noqa: E402
from detimb.utils import atomic_write_json  # noqa: E402

CONFIGS = {"demo (random samplers, CE)": "demo/faster_rcnn_shapes", "iou_balanced": "samplers/iou_balanced",
           "ohem": "samplers/ohem", "seesaw": "losses/seesaw"}
SYNCING = {torch.Tensor.nonzero: "nonzero", torch.nonzero: "nonzero", torch.argwhere: "nonzero",
           torch.Tensor.item: "item", torch.Tensor.tolist: "tolist", torch.Tensor.__bool__: "bool",
           torch.Tensor.__int__: "int", torch.Tensor.__float__: "float", torch.Tensor.__index__: "int"}


def _boolean_index(index: Any) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts)


class CountSyncs(TorchFunctionMode):
    """Counts the host-synchronising calls made while entered, by kind."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        if func in SYNCING:
            self.counts[SYNCING[func]] += 1
        elif func is torch.where and len(args) + len(kwargs) == 1:
            self.counts["nonzero"] += 1
        elif func is torch.Tensor.__getitem__ and _boolean_index(args[1]):
            self.counts["boolean index"] += 1
        return func(*args, **kwargs)


def count(step) -> dict[str, Any]:  # noqa: ANN001
    step()  # warm-up: lazily built state (anchors' caches, loss statistics)
    with CountSyncs() as mode:
        step()
    return {"total": sum(mode.counts.values()), **dict(sorted(mode.counts.items()))}


def measure(name: str, overrides: list[str], work: Path) -> dict[str, Any]:
    cfg = load_config(f"detimb://{name}", [*overrides, "data.check_images=false"])
    trainer = Trainer(cfg, work / name.replace("/", "_"), progress=False)
    ds = CocoDetection(cfg.data.train.ann_file, cfg.data.train.img_dir)
    images, targets = collate([ds[i] for i in range(cfg.data.batch_size)])
    def forward_backward(model: torch.nn.Module) -> None:
        losses = model(images, targets)
        sum(losses.values()).backward()

    row = {"detimb trainer step": count(lambda: trainer.step(images, targets)),
           "detimb forward + backward": count(lambda: forward_backward(trainer.model))}
    if name.startswith("demo/"):
        torch.manual_seed(0)
        twin = torchvision_twin(trainer.model, cfg, ds.label_map.num_classes, with_masks=False)
        twin.load_state_dict(trainer.model.state_dict())
        twin.train()
        # the trainer's optimizer and schedule, built the same way for the twin
        optimizer = build_optimizer(cfg.train.optimizer, twin)
        scheduler = build_scheduler(cfg.train.schedule, optimizer)

        def twin_step() -> None:
            forward_backward(twin)
            optimizer.step()
            scheduler.step()

        row["torchvision twin forward + backward"] = count(lambda: forward_backward(twin))
        row["torchvision twin + the same SGD step and schedule"] = count(twin_step)
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "host_syncs.json"))
    args = p.parse_args()
    torch.set_num_threads(1)
    overrides = shapes_overrides()
    with tempfile.TemporaryDirectory() as tmp:
        results = {label: measure(name, overrides, Path(tmp)) for label, name in CONFIGS.items()}
    atomic_write_json(args.out, results, indent=2)
    for label, rows in results.items():
        for who, counts in rows.items():
            print(f"{label:28s} {who:38s} {counts}")


if __name__ == "__main__":
    main()
