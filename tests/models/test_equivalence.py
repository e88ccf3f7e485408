"""detimb's detectors with their default slots must train exactly like torchvision's own."""

import copy

import pytest
import torch
from torchvision.models.detection import RetinaNet
from torchvision.models.detection.retinanet import RetinaNetHead

from detimb.data.coco import CocoDetection, collate
from benchmarks.twins import torchvision_twin
from detimb.models import build_detector


def batch(root, with_masks):
    ds = CocoDetection(root / "annotations/train.json", root / "train", with_masks=with_masks)
    return collate([ds[0], ds[1], ds[2]]), ds.label_map


def losses_with_seed(model, images, targets, seed=0):
    torch.manual_seed(seed)
    model.train()
    return {k: v.item() for k, v in model(images, targets).items()}


@pytest.mark.parametrize("model_type", ["faster_rcnn", "mask_rcnn"])
def test_two_stage_losses_equal_torchvision(tiny_config, tiny_shapes, model_type):
    cfg = tiny_config(model_type, model={"transform": {"resize": True}})
    with_masks = model_type == "mask_rcnn"
    (images, targets), label_map = batch(tiny_shapes, with_masks)
    ours = build_detector(cfg.model, label_map)
    theirs = torchvision_twin(ours, cfg, label_map.num_classes, with_masks)
    theirs.load_state_dict(ours.state_dict())
    got, want = losses_with_seed(ours, images, targets), losses_with_seed(theirs, images, targets)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-7), key


@pytest.mark.parametrize("head", [{}, {"sampler": {"type": "focal"}, "loss_cls": {"type": "binary_cross_entropy"}}],
                         ids=["focal_loss", "focal_sampler_x_bce"])
def test_retinanet_losses_equal_torchvision(tiny_config, tiny_shapes, head):
    cfg = tiny_config("retinanet", model={"transform": {"resize": True}, "retina_head": head})
    (images, targets), label_map = batch(tiny_shapes, False)
    ours = build_detector(cfg.model, label_map)
    t = cfg.model.transform
    head = RetinaNetHead(ours.backbone.out_channels, ours.anchor_generator.num_anchors_per_location()[0],
                         label_map.num_classes)
    theirs = RetinaNet(copy.deepcopy(ours.backbone), label_map.num_classes, min_size=t.min_size,
                       max_size=t.max_size, image_mean=list(t.image_mean), image_std=list(t.image_std),
                       anchor_generator=ours.anchor_generator, head=head)
    theirs.load_state_dict(ours.state_dict())
    got, want = losses_with_seed(ours, images, targets), losses_with_seed(theirs, images, targets)
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-5), key


def test_retinanet_classification_bias_from_prior(tiny_config, tiny_shapes):
    cfg = tiny_config("retinanet", model={"retina_head": {"prior_probability": 0.05}})
    _, label_map = batch(tiny_shapes, False)
    model = build_detector(cfg.model, label_map)
    # b = -log((1 - p) / p)
    want = -torch.log(torch.tensor((1 - 0.05) / 0.05))
    assert torch.allclose(model.head.classification_head.cls_logits.bias, want.expand_as(
        model.head.classification_head.cls_logits.bias))


def test_inference_equals_torchvision(tiny_config, tiny_shapes):
    cfg = tiny_config("faster_rcnn", model={"transform": {"resize": True}})
    (images, _), label_map = batch(tiny_shapes, False)
    ours = build_detector(cfg.model, label_map).eval()
    theirs = torchvision_twin(ours, cfg, label_map.num_classes, False).eval()
    theirs.load_state_dict(ours.state_dict())
    with torch.no_grad():
        a, b = ours(images), theirs(images)
    for x, y in zip(a, b):
        assert torch.equal(x["boxes"], y["boxes"]) and torch.equal(x["labels"], y["labels"])
