"""Every registered module plugs into every detector that has a slot for it."""

import math

import pytest
import torch

from detimb.data.coco import CocoDetection, collate
from detimb.errors import ConfigError
from detimb.losses import BOX_LOSSES
from detimb.models import BACKBONES, DETECTORS, NECKS, build_detector
from detimb.samplers import SAMPLERS
from tests.conftest import RETINA_NECK, TINY_MODEL

TWO_STAGE = ["faster_rcnn", "mask_rcnn"]


def train_step(cfg, root):
    with_masks = cfg.model.type == "mask_rcnn"
    ds = CocoDetection(root / "annotations/train.json", root / "train", with_masks=with_masks)
    images, targets = collate([ds[0], ds[1]])
    model = build_detector(cfg.model, ds.label_map)
    model.train()
    losses = model(images, targets)
    total = sum(losses.values())
    total.backward()
    assert all(math.isfinite(v.item()) for v in losses.values()), losses
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2 and {"boxes", "labels", "scores"} <= set(out[0])
    if with_masks:
        assert out[0]["masks"].shape[-2:] == images[0].shape[-2:]
    return losses


@pytest.mark.parametrize("detector", DETECTORS.names())
@pytest.mark.parametrize("neck", NECKS.names())
def test_every_neck_in_every_detector(tiny_config, tiny_shapes, detector, neck):
    base = dict(RETINA_NECK if detector == "retinanet" else TINY_MODEL["neck"])
    train_step(tiny_config(detector, model={"neck": {**base, "type": neck}}), tiny_shapes)


@pytest.mark.parametrize("detector", TWO_STAGE)
@pytest.mark.parametrize("fuse", ["max", "sum"])
def test_adaptive_pooling_in_every_two_stage_detector(tiny_config, tiny_shapes, detector, fuse):
    cfg = tiny_config(detector, model={"neck": {**TINY_MODEL["neck"], "type": "panet"},
                                       "roi_head": {"adaptive_pooling": {"enabled": True, "fuse": fuse}}})
    train_step(cfg, tiny_shapes)


@pytest.mark.parametrize("detector", TWO_STAGE)
@pytest.mark.parametrize("sampler", SAMPLERS.names())
@pytest.mark.parametrize("stage", ["rpn", "roi_head"])
def test_every_sampler_in_every_two_stage_stage(tiny_config, tiny_shapes, detector, sampler, stage):
    cfg = tiny_config(detector, model={stage: {"sampler": {"type": sampler}}})
    train_step(cfg, tiny_shapes)


@pytest.mark.parametrize("loss", BOX_LOSSES.names())
@pytest.mark.parametrize("detector,head", [("faster_rcnn", "rpn"), ("faster_rcnn", "roi_head"),
                                           ("mask_rcnn", "roi_head"), ("retinanet", "retina_head")])
def test_every_box_loss_in_every_head(tiny_config, tiny_shapes, loss, detector, head):
    cfg = tiny_config(detector, model={head: {"loss_bbox": {"type": loss}}})
    train_step(cfg, tiny_shapes)


@pytest.mark.parametrize("backbone", BACKBONES.names())
def test_every_backbone_in_faster_rcnn(tiny_config, tiny_shapes, backbone):
    overrides = {"backbone": {"type": backbone}}
    if backbone == "mobilenet_v3_large":  # three levels (strides 8-32) plus the pooled one
        overrides["anchors"] = {"sizes": [[16], [32], [64], [128]]}
    cfg = tiny_config("faster_rcnn", model=overrides)
    train_step(cfg, tiny_shapes)


def test_fixed_balancer_scales_the_roi_terms(tiny_config, tiny_shapes):
    plain = train_step(tiny_config("faster_rcnn"), tiny_shapes)
    torch.manual_seed(0)
    cfg = tiny_config("faster_rcnn", model={"roi_head": {"balancer": {"type": "fixed",
                                                                       "weights": {"loss_box_reg": 0.0}}}})
    balanced = train_step(cfg, tiny_shapes)
    assert balanced["loss_box_reg"].item() == 0.0 and plain["loss_box_reg"].item() > 0


def test_bad_slot_arguments_are_config_errors(tiny_config, tiny_shapes):
    ds = CocoDetection(tiny_shapes / "annotations/train.json", tiny_shapes / "train")
    with pytest.raises(ConfigError, match=r"model.roi_head.sampler: sampler 'random' has no argument 'nmu'"):
        build_detector(tiny_config(model={"roi_head": {"sampler": {"nmu": 3}}}).model, ds.label_map)
    with pytest.raises(ConfigError, match=r"model.anchors.sizes has 4 entries but the neck outputs 5 levels"):
        build_detector(tiny_config(model={"anchors": {"sizes": [[8]] * 4}}).model, ds.label_map)
    with pytest.raises(ConfigError, match=r"model.type: unknown detector type 'faster_rnn'"):
        build_detector(tiny_config(model={"type": "faster_rnn"}).model, ds.label_map)
