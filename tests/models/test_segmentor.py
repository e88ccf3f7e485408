"""The semantic segmentation model with every pixel sampler and loss; Mask R-CNN's pixel mask losses."""

import math

import pytest
import torch
from torchvision.models.detection.roi_heads import maskrcnn_loss

from detimb.data.coco import collate
from detimb.data.loader import build_segmentation_datasets
from detimb.errors import ConfigError
from detimb.losses import CLS_LOSSES, Form
from detimb.losses import ClassStatistics
from detimb.models import build_model
from detimb.models.builder import MASK_PIXEL_LOSSES
from detimb.models.heads.roi_heads import pixel_mask_loss
from detimb.samplers import SAMPLERS
from tests.models.test_detectors import train_step

DENSE_SAMPLERS = [n for n in SAMPLERS.names() if not SAMPLERS.get(n).needs.geometry]
SOFTMAX_LOSSES = [n for n in CLS_LOSSES.names() if CLS_LOSSES.get(n).form is Form.SOFTMAX]
SAMPLER_ARGS = {"random": {"num": 512, "pos_fraction": 0.25}, "ohem": {"num": 512, "pos_fraction": 0.25},
                "random_pixels": {"num": 512}, "class_balanced_pixels": {"num": 512},
                "ohem_pixels": {"thresh": 0.7, "min_kept": 256}}


def seg_config(tiny_config, head=None, data=None, **model):
    return tiny_config("semantic_seg", model={"head": {"channels": 8, **(head or {})}, **model}, data=data or {})


def seg_steps(cfg, iterations=3):
    """A few optimizer steps on the first items; returns the losses and the model."""
    torch.manual_seed(0)
    train, _ = build_segmentation_datasets(cfg.data, 0)
    model = build_model(cfg.model, train.label_map,
                        ClassStatistics.from_instances([100] * (train.label_map.num_classes - 1))).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    images, targets = collate([train[i] for i in range(2)])
    values = []
    for _ in range(iterations):
        loss = model(images, targets)["loss_seg"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        values.append(loss.item())
    assert all(math.isfinite(v) for v in values), values
    return values, model


@pytest.mark.parametrize("sampler", DENSE_SAMPLERS)
def test_every_pixel_sampler_trains_the_segmentation_model(tiny_config, sampler):
    cfg = seg_config(tiny_config, {"sampler": {"type": sampler, **SAMPLER_ARGS.get(sampler, {})}})
    _, model = seg_steps(cfg)
    stats = model.head.objective.stats
    kept = stats["pos_per_image"] + stats["neg_per_image"]
    assert kept > 0
    if sampler in ("random_pixels", "class_balanced_pixels"):
        assert kept <= 512


@pytest.mark.parametrize("loss", SOFTMAX_LOSSES)
def test_every_softmax_loss_trains_the_segmentation_model(tiny_config, loss):
    spec = {"type": loss}
    if loss.startswith("asymmetric"):
        spec["rare_classes"] = ["cross", 6]  # a name and a category id
    if loss == "cross_entropy":
        spec["class_weight"] = "inverse_freq"
    seg_steps(seg_config(tiny_config, {"loss": spec}))


@pytest.mark.parametrize("data", [
    {"train": {"patch_sampler": {"type": "class_balanced", "patch_size": 32}}},
    {"train": {"patch_sampler": {"type": "random", "patch_size": 24}}},
    {"mixup": {"type": "asymmetric", "alpha": 0.4, "rare_classes": ["crescent"]}},
    {"mixup": {"type": "mixup"}},
    {"train": {"asymmetric_augmentation": {"background_p": 0.0}}},
], ids=["class_balanced_patches", "random_patches", "asymmetric_mixup", "mixup", "asymmetric_augmentation"])
def test_data_remedies_train_the_segmentation_model(tiny_config, data):
    seg_steps(seg_config(tiny_config, data=data))


def test_samplers_that_need_boxes_are_refused(tiny_config):
    cfg = seg_config(tiny_config, {"sampler": {"type": "iou_balanced"}})
    with pytest.raises(ConfigError, match="model.head.sampler.*box IoU"):
        seg_steps(cfg)


def test_unknown_rare_class_names_the_choices(tiny_config):
    cfg = seg_config(tiny_config, {"loss": {"type": "asymmetric_focal", "rare_classes": ["hexagon"]}})
    with pytest.raises(ConfigError, match="hexagon.*categories"):
        seg_steps(cfg)


def test_hard_examples_need_patches(tiny_config):
    cfg = seg_config(tiny_config, data={"train": {"hard_examples": {"enabled": True}}})
    with pytest.raises(ConfigError, match="patch_sampler"):
        seg_steps(cfg)


@pytest.mark.parametrize("resize", [False, True])
def test_inference_returns_probabilities_at_the_input_size(tiny_config, resize):
    cfg = seg_config(tiny_config, transform={"resize": resize, "min_size": 40, "max_size": 64})
    _, val = build_segmentation_datasets(cfg.data, 0)
    model = build_model(cfg.model, val.label_map).eval()
    images = [val[0][0], val[1][0][:, :48, :56]]
    with torch.no_grad():
        out = model(images)
    for im, o in zip(images, out):
        assert o["sem_seg"].shape == (val.label_map.num_classes, *im.shape[-2:])
        assert torch.allclose(o["sem_seg"].sum(0), torch.ones(im.shape[-2:]), atol=1e-5)


@pytest.mark.parametrize("loss", MASK_PIXEL_LOSSES)
def test_mask_rcnn_mask_branch_takes_pixel_losses(tiny_config, tiny_shapes, loss):
    losses, _ = train_step(tiny_config("mask_rcnn", model={"roi_head": {"loss_mask": {"type": loss}}}), tiny_shapes)
    assert "loss_mask" in losses


def test_mask_rcnn_refuses_losses_that_do_not_read_on_a_binary_mask(tiny_config, tiny_shapes):
    cfg = tiny_config("mask_rcnn", model={"roi_head": {"loss_mask": {"type": "asymmetric_focal"}}})
    with pytest.raises(ConfigError, match="loss_mask"):
        train_step(cfg, tiny_shapes)


def test_pixel_cross_entropy_mask_loss_equals_torchvision_on_binary_targets():
    torch.manual_seed(0)
    mask_logits = torch.randn(3, 4, 7, 7)
    gt_masks = [torch.ones(2, 32, 32)]  # full masks: every projected target is exactly 1
    gt_masks[0][1, :, :] = 0  # ...or exactly 0
    proposals = [torch.tensor([[2.0, 2.0, 20.0, 20.0], [0.0, 4.0, 30.0, 12.0], [5.0, 5.0, 9.0, 30.0]])]
    labels, matched = [torch.tensor([1, 3])], [torch.tensor([0, 1, 0])]
    want = maskrcnn_loss(mask_logits, proposals, gt_masks, labels, matched)
    got = pixel_mask_loss(CLS_LOSSES.build({"type": "cross_entropy"}, "t"), mask_logits, proposals, gt_masks,
                          labels, matched)
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
