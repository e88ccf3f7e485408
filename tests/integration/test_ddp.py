"""Two CPU processes with the gloo backend end with identical weights."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, write_config

pytestmark = pytest.mark.slow  # a subprocess or two ranks each: seconds per test

# segmentation on patches with hard examples: 8 patches per epoch, 2 per rank per step
SEGMENTATION = {"model": {"head": {"channels": 8}}, "data": {"batch_size": 2, "train": {
    "patch_sampler": {"type": "class_balanced", "patch_size": 32, "patches_per_epoch": 8},
    "hard_examples": {"enabled": True, "confidence": 0.99}}}}


# the losses with running statistics, each rank's increments all-reduced (a full training, not the losses alone)
SEESAW = {"model": {"roi_head": {"loss_cls": {"type": "seesaw", "objectness": True}}}}
GHM = {"model": {"retina_head": {"loss_cls": {"type": "ghm_c"}, "loss_bbox": {"type": "ghm_r"}}}}
STATISTICS = {"faster_rcnn_seesaw": ["roi_heads.objective.loss_cls.cum_samples"],
              "retinanet_ghm": ["head.objective.loss_cls.density.acc_sum", "head.objective.loss_bbox.density.acc_sum"]}


@pytest.mark.parametrize("model_type,overrides", [("faster_rcnn", {}), ("semantic_seg", SEGMENTATION),
                                                  ("faster_rcnn", SEESAW), ("retinanet", GHM)],
                         ids=["faster_rcnn", "semantic_seg_hard_examples", "faster_rcnn_seesaw", "retinanet_ghm"])
def test_two_gloo_ranks_end_identical(tiny_shapes, tmp_path, model_type, overrides, request):
    cfg = write_config(tmp_path, tiny_shapes, model_type,
                       train={"schedule": {"max_iters": 3}, "eval_interval": 2, "log_interval": 1}, **overrides)
    work = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(Path(__file__).with_name("ddp_worker.py")), str(cfg), str(work)],
        capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = torch.load(work / "rank0.pth", weights_only=True)
    b = torch.load(work / "rank1.pth", weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert a["data"] == b["data"]  # both ranks reintroduce the same hard patches
    if model_type == "semantic_seg":
        assert a["data"]["hard"][1]  # epoch 1 (from iteration 3) opens with epoch 0's hard patches
    for key in STATISTICS.get(request.node.callspec.id, []):  # the statistics moved, alike on both ranks
        assert a["model"][key].abs().sum() > 0, key
    first = torch.load(work / "last.pth", weights_only=True)
    assert first["iteration"] == 3 and len(first["rng"]) == 2
    assert (work / "eval.json").exists()
