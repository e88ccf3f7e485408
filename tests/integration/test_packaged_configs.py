"""Every packaged detection config trains 2 steps under bf16 autocast (the CPU's stand-in for
a GPU's mixed precision; RetinaNet configs at their 128 px, see below) with finite losses, and
--load-from its checkpoint into the same config trains on: losses with statistics included
(issue #34)."""

from __future__ import annotations

import math

import pytest
import torch

from detimb.config import load_config, packaged_configs
from detimb.engine.trainer import Trainer

pytestmark = pytest.mark.slow  # two short trainings per config

# the fine-tuning configs need torchvision's weights files (ResNet-50 at 800 px); segmentation has its own tests
DETECTION = [n for n in packaged_configs() if not n.startswith(("finetune/", "segmentation/")) and "semantic" not in n]
# RetinaNet's P7 is a stride-2 3x3 conv on P6, and on the 64 px test images P6 is 1 x 1. There PyTorch 2.14.1's CPU
# bf16 weight gradient of a stride-2 conv on a 1 x 1 input leaves the eight padding-only taps uninitialised: NaN run
# to run (200 of 200 calls after freeing NaN-filled memory, 0 of 200 in float32 or at stride 1 or on a 2 x 2 input;
# the reproduction is in issue #34's note). Not detimb's arithmetic, and not the GPU's; RetinaNet configs train here
# at their own 128 px (P6 2 x 2), under bf16 like every other config.
def precision(name: str) -> list[str]:
    if load_config(f"detimb://{name}").model.type == "retinanet":
        return ["train.amp=bf16", "model.transform.resize=true"]
    return ["train.amp=bf16"]


@pytest.mark.parametrize("name", DETECTION)
def test_trains_under_bf16_and_fine_tunes_from_its_own_checkpoint(name, tiny_shapes, tmp_path):
    data = [f"data.{split}.ann_file={tiny_shapes}/annotations/{split}.json" for split in ("train", "val")]
    data += [f"data.{split}.img_dir={tiny_shapes}/{split}" for split in ("train", "val")]
    settings = [*data, "data.batch_size=2", "data.num_workers=0", "data.check_images=false",
                "evaluation.enabled=false", *precision(name), "train.log_interval=1"]
    first = Trainer(load_config(f"detimb://{name}", [*settings, "train.schedule.max_iters=2"]), tmp_path / "a",
                    progress=False)
    losses = first.step(*_batch(first))
    assert all(math.isfinite(float(v)) for v in losses.values()), losses
    first.train()
    tuned = Trainer(load_config(f"detimb://{name}", [*settings, "train.schedule.max_iters=1"]), tmp_path / "b",
                    load_from=tmp_path / "a" / "last.pth", progress=False)
    tuned.train()
    assert torch.load(tmp_path / "b" / "last.pth", weights_only=True)["iteration"] == 1


def _batch(trainer: Trainer) -> tuple[list, list]:
    return next(iter(trainer.train_loader))
