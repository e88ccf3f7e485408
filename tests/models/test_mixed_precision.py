"""Mixed precision keeps the numbers: ground truth, IoUs and GHM weights stay float32, and
every detector trains under the CPU's bf16 autocast (which stands in for a GPU's)."""

from __future__ import annotations

import math

import pytest
import torch

from detimb.config import load_config
from detimb.data.coco import CocoDetection, collate
from detimb.engine.precision import autocast_dtype
from detimb.engine.trainer import Trainer
from detimb.errors import ConfigError
from detimb.losses import GHMCLoss, IoULoss
from detimb.losses.regression import elementwise_iou
from detimb.models import DETECTORS, build_detector
from detimb.models.heads.batch import Targets
from detimb.models.heads.matching import Matches
from tests.conftest import write_config
from tests.models.test_detectors import class_statistics


def test_ghm_c_on_a_large_fp16_batch_is_finite_and_equals_fp32():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1_000_000, 4, generator=g) * 4  # 4M elements, 1 in 1000 positive
    targets = (torch.rand(1_000_000, 4, generator=g) < 1e-3).float()
    half = GHMCLoss()(logits.half(), targets.half())  # weights reach ~4e6 / bin count: inf in fp16
    full = GHMCLoss()(logits, targets)
    assert math.isfinite(half.item())
    assert half.item() == pytest.approx(full.item(), rel=1e-3)


def test_iou_of_a_large_box_under_fp16():
    pred, target = torch.tensor([[0.0, 0.0, 320.0, 300.0]]), torch.tensor([[0.0, 0.0, 320.0, 304.0]])
    want = 1 - (320 * 300) / (320 * 304)  # by hand: one box inside the other, 96000 / 97280
    assert IoULoss().per_box(pred.half(), target.half()).item() == pytest.approx(want, abs=1e-4)
    assert elementwise_iou(pred.half(), target.half()).dtype == torch.float32


def test_matched_ground_truth_keeps_float32_beside_fp16_anchors():
    anchors = [torch.tensor([[0.0, 0.0, 2000.0, 1500.0], [5.0, 5.0, 9.0, 9.0]]).half()]
    gt = [torch.tensor([[1.5, 2.5, 2001.5, 1499.5]])]  # not representable in fp16 above 1024 px
    matches = [Matches(torch.tensor([1, 0]), torch.tensor([0.9, 0.0]), torch.tensor([0, 0]))]
    batch = Targets.from_matches(matches, anchors, gt)
    assert batch.gt_boxes is not None and batch.gt_boxes.dtype == torch.float32
    assert torch.equal(batch.gt_boxes[0], gt[0][0])
    empty = Targets.from_matches(matches, anchors, [torch.zeros(0, 4)])
    assert empty.gt_boxes is not None and empty.gt_boxes.dtype == torch.float32


@pytest.mark.parametrize("detector", DETECTORS.names())
def test_every_detector_trains_a_step_under_bf16_autocast(tiny_config, tiny_shapes, detector):
    with_masks = detector == "mask_rcnn"
    ds = CocoDetection(tiny_shapes / "annotations/train.json", tiny_shapes / "train", with_masks=with_masks)
    images, targets = collate([ds[0], ds[1]])
    model = build_detector(tiny_config(detector).model, ds.label_map, class_statistics(ds))
    model.train()
    seen: list[Targets] = []
    hooks = [m.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
             for name, m in model.named_modules() if name.endswith("objective")]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model(images, targets)
    for hook in hooks:
        hook.remove()
    assert all(math.isfinite(v.item()) for v in losses.values()), losses
    sum(losses.values()).backward()
    assert seen and all(t.gt_boxes is None or t.gt_boxes.dtype == torch.float32 for t in seen)


def test_train_amp_bf16_runs_on_the_cpu_and_fp16_falls_back_with_a_warning(tiny_shapes, tmp_path):
    cfg = load_config(write_config(tmp_path, tiny_shapes, "faster_rcnn", train={"amp": "bf16",
                                                                                  "schedule": {"max_iters": 2}}))
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    assert trainer.amp_dtype == torch.bfloat16 and not trainer.scaler.is_enabled()
    trainer.train()
    with pytest.warns(UserWarning, match="fp16 needs a CUDA device"):
        assert autocast_dtype("fp16", torch.device("cpu")) is None
    assert autocast_dtype(False, torch.device("cpu")) is None
    with pytest.raises(ConfigError, match=r"train\.amp.*fp16 \(true means fp16\) or bf16"):
        load_config(write_config(tmp_path, tiny_shapes, "faster_rcnn", train={"amp": "fp8"}))


def test_sync_bn_converts_every_batchnorm_on_cuda_and_is_ignored_with_a_warning_elsewhere(tiny_config, tiny_shapes):
    from detimb.engine.precision import with_sync_batchnorm

    ds = CocoDetection(tiny_shapes / "annotations/train.json", tiny_shapes / "train")
    model = build_detector(tiny_config("faster_rcnn").model, ds.label_map)  # small_cnn: BatchNorm2d
    plain = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert plain
    converted = with_sync_batchnorm(model, torch.device("cuda"))  # the conversion itself needs no GPU
    norms = [m for m in converted.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert len(norms) == len(plain) and all(isinstance(m, torch.nn.SyncBatchNorm) for m in norms)
    with pytest.warns(UserWarning, match="sync_bn needs CUDA"):
        assert with_sync_batchnorm(model, torch.device("cpu")) is model


def test_the_non_local_attention_is_float32_under_autocast():
    from torch.overrides import TorchFunctionMode

    from detimb.models.necks.bfp import NonLocal2d

    class SoftmaxInputs(TorchFunctionMode):
        def __init__(self) -> None:
            super().__init__()
            self.dtypes: list[torch.dtype] = []

        def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
            if func is torch.softmax:
                self.dtypes.append(args[0].dtype)
            return func(*args, **(kwargs or {}))

    block = NonLocal2d(8)
    x = torch.randn(1, 8, 6, 6) * 40  # the unscaled logits theta . phi reach thousands
    with torch.autocast("cpu", dtype=torch.bfloat16), SoftmaxInputs() as mode:
        out = block(x)
    assert mode.dtypes == [torch.float32] and torch.isfinite(out).all()
