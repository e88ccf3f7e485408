"""GHM in the anchor heads reduces level by level, as mmdetection's ``AnchorHead.loss_by_feat``
calls ``loss_by_feat_single`` once per pyramid level and sums the levels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection._utils import BoxCoder

from detimb.data.coco import CocoDetection, collate
from detimb.models import build_detector
from detimb.models.heads.batch import Predictions, Targets


class RestatedGHMC:
    """mmdetection ``mmdet/models/losses/ghm_loss.py`` ``GHMC.forward``, line by line."""

    def __init__(self, bins: int, momentum: float) -> None:
        self.bins, self.momentum = bins, momentum
        self.edges = [float(x) / bins for x in range(bins + 1)]
        self.edges[-1] += 1e-6
        self.acc_sum = [0.0] * bins

    def __call__(self, pred: torch.Tensor, target: torch.Tensor, label_weight: torch.Tensor) -> torch.Tensor:
        edges, mmt = self.edges, self.momentum
        weights = torch.zeros_like(pred)
        g = torch.abs(pred.sigmoid().detach() - target)
        valid = label_weight > 0
        tot = max(valid.float().sum().item(), 1.0)
        n = 0
        for i in range(self.bins):
            inds = (g >= edges[i]) & (g < edges[i + 1]) & valid
            num_in_bin = inds.sum().item()
            if num_in_bin > 0:
                if mmt > 0:
                    self.acc_sum[i] = mmt * self.acc_sum[i] + (1 - mmt) * num_in_bin
                    weights[inds] = tot / self.acc_sum[i]
                else:
                    weights[inds] = tot / num_in_bin
                n += 1
        if n > 0:
            weights = weights / n
        return F.binary_cross_entropy_with_logits(pred, target, weights, reduction="sum") / tot


class RestatedGHMR:
    """mmdetection ``ghm_loss.py`` ``GHMR.forward``, line by line (ASL1, ``avg_factor=tot``)."""

    def __init__(self, mu: float, bins: int, momentum: float) -> None:
        self.mu, self.bins, self.momentum = mu, bins, momentum
        self.edges = [float(x) / bins for x in range(bins + 1)]
        self.edges[-1] = 1e3
        self.acc_sum = [0.0] * bins

    def __call__(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        mu, edges, mmt = self.mu, self.edges, self.momentum
        diff = pred - target
        loss = torch.sqrt(diff * diff + mu * mu) - mu
        g = torch.abs(diff / torch.sqrt(mu * mu + diff * diff)).detach()
        weights = torch.zeros_like(g)
        tot = max(float(g.numel()), 1.0)  # label_weight: 1 on every coordinate of a positive
        n = 0
        for i in range(self.bins):
            inds = (g >= edges[i]) & (g < edges[i + 1])
            num_in_bin = inds.sum().item()
            if num_in_bin > 0:
                n += 1
                if mmt > 0:
                    self.acc_sum[i] = mmt * self.acc_sum[i] + (1 - mmt) * num_in_bin
                    weights[inds] = tot / self.acc_sum[i]
                else:
                    weights[inds] = tot / num_in_bin
        if n > 0:
            weights = weights / n
        return (loss * weights).sum() / tot


GHM = {"loss_cls": {"type": "ghm_c", "bins": 30, "momentum": 0.75},
       "loss_bbox": {"type": "ghm_r", "mu": 0.02, "bins": 10, "momentum": 0.7}}


def captured_step(model, images, targets) -> tuple[dict[str, torch.Tensor], Targets, Predictions]:
    """One training forward, with what the head handed its objective."""
    seen: list[tuple[Targets, Predictions]] = []
    objective = model.head.objective
    hook = objective.register_forward_pre_hook(lambda module, args: seen.append((args[0], args[1])))
    model.train()
    losses = model(images, targets)
    hook.remove()
    return losses, *seen[0]


def test_retinanet_ghm_equals_mmdetections_per_level_sum(tiny_config, tiny_shapes):
    ds = CocoDetection(tiny_shapes / "annotations/train.json", tiny_shapes / "train")
    images, targets = collate([ds[0], ds[1]])
    # objects of every size (anchors 16 to 80 px on P3-P7), so that positives fall on several levels
    sizes = torch.tensor([[4.0, 4, 20, 20], [2, 2, 30, 32], [10, 6, 50, 48], [0, 0, 63, 63]])
    targets[0] = {"boxes": sizes, "labels": torch.tensor([1, 2, 3, 4])}
    torch.manual_seed(0)
    model = build_detector(tiny_config("retinanet", model={"retina_head": GHM}).model, ds.label_map)
    losses, batch, predictions = captured_step(model, images, targets)
    assert batch.level is not None and batch.num_levels == len(model.anchor_generator.sizes) > 2
    assert torch.bincount(batch.level).gt(0).sum() == batch.num_levels  # every level holds anchors

    ghm_c, ghm_r = RestatedGHMC(30, 0.75), RestatedGHMR(0.02, 10, 0.7)
    coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))  # torchvision's RetinaNet coder
    want_cls, want_box = torch.zeros(()), torch.zeros(())
    positives_per_level = []
    with torch.no_grad():
        for level in range(batch.num_levels):  # levels in order, each over both images
            at = batch.level == level
            logits, labels = predictions.cls_logits[at], batch.labels[at]
            onehot = torch.zeros_like(logits)
            onehot[labels > 0, labels[labels > 0]] = 1.0
            want_cls = want_cls + ghm_c(logits, onehot, (labels >= 0).float()[:, None].expand_as(logits))
            pos = at & (batch.labels > 0)
            positives_per_level.append(int(pos.sum()))
            goal = coder.encode_single(batch.gt_boxes[pos], batch.boxes[pos])
            want_box = want_box + ghm_r(predictions.deltas[pos], goal)
    assert sum(n > 0 for n in positives_per_level) >= 2, "the case must spread positives over levels"
    assert losses["classification"].item() == pytest.approx(want_cls.item(), rel=1e-5)
    assert losses["bbox_regression"].item() == pytest.approx(want_box.item(), rel=1e-5)
    # the running counts were updated level after level, as the released loop updates them
    objective = model.head.objective
    assert objective.loss_cls.density.acc_sum.tolist() == pytest.approx(ghm_c.acc_sum, rel=1e-6)
    assert objective.loss_bbox.density.acc_sum.tolist() == pytest.approx(ghm_r.acc_sum, rel=1e-6)


def test_rpn_gives_its_levels_and_losses_without_levels_ignore_them(tiny_config, tiny_shapes):
    ds = CocoDetection(tiny_shapes / "annotations/train.json", tiny_shapes / "train")
    images, targets = collate([ds[0], ds[1]])
    model = build_detector(tiny_config("faster_rcnn").model, ds.label_map)
    seen: list[Targets] = []
    hook = model.rpn.objective.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    model.train()
    model(images, targets)
    hook.remove()
    level = seen[0].level
    assert level is not None and seen[0].num_levels == len(model.rpn.anchor_generator.sizes)
    # each image's anchors run level after level, finest first
    per_image = level.view(2, -1)
    assert torch.equal(per_image[0], per_image[1]) and bool((per_image[0].diff() >= 0).all())
