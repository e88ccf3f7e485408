"""Every registered module plugs into every detector that has a slot for it."""

import math

import pytest
import torch

from detimb.data.coco import CocoDetection, collate
from detimb.errors import ConfigError
from detimb.evaluation.coco_eval import class_frequencies
from detimb.losses import BALANCERS, BOX_LOSSES, CLS_LOSSES, ClassStatistics, Form
from detimb.models import BACKBONES, DETECTORS, NECKS, build_detector
from detimb.samplers import SAMPLERS
from tests.conftest import RETINA_NECK, TINY_MODEL

TWO_STAGE = ["faster_rcnn", "mask_rcnn"]


def class_statistics(ds: CocoDetection) -> ClassStatistics:
    freq = class_frequencies(ds.records.data)
    ids = ds.label_map.coco_ids
    return ClassStatistics(tuple(freq[c]["instances"] for c in ids), tuple(freq[c]["images"] for c in ids),
                           len(ds.records.data["images"]))


def train_step(cfg, root):
    with_masks = cfg.model.type == "mask_rcnn"
    ds = CocoDetection(root / "annotations/train.json", root / "train", with_masks=with_masks)
    images, targets = collate([ds[0], ds[1]])
    model = build_detector(cfg.model, ds.label_map, class_statistics(ds))
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
    return losses, model


@pytest.mark.parametrize("detector", DETECTORS.names())
@pytest.mark.parametrize("neck", NECKS.names())
def test_every_neck_in_every_detector(tiny_config, tiny_shapes, detector, neck):
    base = dict(RETINA_NECK if detector in ("retinanet", "fcos") else TINY_MODEL["neck"])
    if detector == "fcos":
        base["out_channels"] = 64  # its head's GroupNorm has 32 groups
    train_step(tiny_config(detector, model={"neck": {**base, "type": neck}}), tiny_shapes)


@pytest.mark.parametrize("detector", TWO_STAGE)
@pytest.mark.parametrize("fuse", ["max", "sum"])
def test_adaptive_pooling_in_every_two_stage_detector(tiny_config, tiny_shapes, detector, fuse):
    cfg = tiny_config(detector, model={"neck": {**TINY_MODEL["neck"], "type": "panet"},
                                       "roi_head": {"adaptive_pooling": {"enabled": True, "fuse": fuse}}})
    train_step(cfg, tiny_shapes)


def objective_of(model, stage: str):
    """The objective of a detector's head ``stage``."""
    return {"rpn": lambda: model.rpn.objective, "roi_head": lambda: model.roi_heads.objective,
            "ssd_head": lambda: model.objective}.get(stage, lambda: model.head.objective)()


STAGES = [("faster_rcnn", "rpn"), ("faster_rcnn", "roi_head"), ("mask_rcnn", "rpn"), ("mask_rcnn", "roi_head"),
          ("retinanet", "retina_head"), ("fcos", "fcos_head"), ("ssd", "ssd_head")]


@pytest.mark.parametrize("detector,stage", STAGES)
@pytest.mark.parametrize("sampler", SAMPLERS.names())
def test_every_sampler_in_every_stage_of_every_detector(tiny_config, tiny_shapes, detector, stage, sampler):
    head = {"sampler": {"type": sampler}}
    if sampler in ("random", "instance_balanced", "iou_balanced", "ohem", "score_hlr"):
        head["sampler"].update(num=32, pos_fraction=0.5)
    if sampler in ("random_pixels", "class_balanced_pixels"):
        head["sampler"].update(num=32)
    if sampler == "ohem_pixels":
        head["sampler"].update(min_kept=16)
    if stage in ("retina_head", "fcos_head") and sampler == "focal":
        head["loss_cls"] = {"type": "binary_cross_entropy"}
    if SAMPLERS.get(sampler).needs.predictions and stage != "roi_head":
        with pytest.raises(ConfigError, match="use it in model.roi_head.sampler"):
            train_step(tiny_config(detector, model={stage: head}), tiny_shapes)
        return
    _, model = train_step(tiny_config(detector, model={stage: head}), tiny_shapes)
    stats = objective_of(model, stage).stats
    assert stats["pos_per_image"] + stats["neg_per_image"] > 0


@pytest.mark.parametrize("detector,stage", STAGES)
@pytest.mark.parametrize("balancer", BALANCERS.names())
def test_every_balancer_in_every_stage_of_every_detector(tiny_config, tiny_shapes, detector, stage, balancer):
    cfg = tiny_config(detector, model={stage: {"balancer": {"type": balancer}}})
    if stage == "rpn" and balancer == "carl":
        with pytest.raises(ConfigError, match="carl adds a loss term"):
            train_step(cfg, tiny_shapes)
        return
    losses, model = train_step(cfg, tiny_shapes)
    if balancer == "carl":
        assert "loss_carl" in losses
    assert any(k.startswith("raw/") for k in objective_of(model, stage).stats)


SIGMOID_LOSSES = [n for n in CLS_LOSSES.names() if CLS_LOSSES.get(n).form is Form.SIGMOID]
# written out, not derived from the builder's table: the forms each torchvision head has
CLS_BY_STAGE = {"rpn": ["binary_cross_entropy", "ghm_c", "sigmoid_focal"], "roi_head": CLS_LOSSES.names(),
                "retina_head": SIGMOID_LOSSES, "fcos_head": SIGMOID_LOSSES,
                "ssd_head": [n for n in CLS_LOSSES.names() if CLS_LOSSES.get(n).form is Form.SOFTMAX]}


@pytest.mark.parametrize("detector,stage", STAGES)
@pytest.mark.parametrize("loss", CLS_LOSSES.names())
def test_every_classification_loss_in_every_stage(tiny_config, tiny_shapes, detector, stage, loss):
    cfg = tiny_config(detector, model={stage: {"loss_cls": {"type": loss}}})
    if loss not in CLS_BY_STAGE[stage]:
        wrong_form = stage != "rpn" or CLS_LOSSES.get(loss).form is Form.SOFTMAX
        with pytest.raises(ConfigError, match=r"fits in .*model\.roi_head\.loss_cls" if wrong_form else
                           "weighs classes, and this head has one objectness output"):
            train_step(cfg, tiny_shapes)
        return
    _, model = train_step(cfg, tiny_shapes)
    assert objective_of(model, stage).loss_cls.form is CLS_LOSSES.get(loss).form
    if stage == "roi_head":  # the predictor has the outputs the loss's layout needs: 7 = background + 6
        outputs = {"eqlv2": 7, "binary_cross_entropy": 6, "eql": 6, "federated": 6, "ghm_c": 6, "sigmoid_focal": 6}
        assert model.roi_heads.box_predictor.cls_score.out_features == outputs.get(loss, 7)


@pytest.mark.parametrize("class_weight", ["inverse_freq", "effective_num"])
def test_class_weighted_cross_entropy_trains(tiny_config, tiny_shapes, tmp_path, class_weight):
    from detimb.engine.trainer import Trainer

    cfg = tiny_config("faster_rcnn", model={"roi_head": {"loss_cls": {"type": "cross_entropy",
                                                                       "class_weight": class_weight}}},
                      train={"schedule": {"max_iters": 2}})
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    weights = trainer.model.roi_heads.objective.loss_cls.weights
    assert weights[0] == 1.0 and weights[-1] > weights[1]  # the rarest class (crescent) weighs most
    trainer.train()


def test_init_prior_sets_the_classifier_biases(tiny_config, tiny_shapes):
    ds = CocoDetection(tiny_shapes / "annotations/train.json", tiny_shapes / "train")
    cfg = tiny_config("faster_rcnn", model={"rpn": {"init_prior": 0.01}, "roi_head": {"init_prior": 0.1}})
    model = build_detector(cfg.model, ds.label_map)
    assert torch.allclose(model.rpn.head.cls_logits.bias, torch.tensor(-math.log(0.99 / 0.01)))
    probs = torch.softmax(model.roi_heads.box_predictor.cls_score.bias, 0)
    assert probs[0].item() == pytest.approx(0.9, rel=1e-5)


def test_focal_sampler_with_focal_loss_is_refused(tiny_config, tiny_shapes):
    ds = CocoDetection(tiny_shapes / "annotations/train.json", tiny_shapes / "train")
    with pytest.raises(ConfigError, match="already applies the focal factor"):
        build_detector(tiny_config("retinanet", model={"retina_head": {"sampler": {"type": "focal"}}}).model,
                       ds.label_map)


@pytest.mark.parametrize("loss", BOX_LOSSES.names())
@pytest.mark.parametrize("detector,head", [("faster_rcnn", "rpn"), ("faster_rcnn", "roi_head"),
                                           ("mask_rcnn", "roi_head"), ("retinanet", "retina_head"),
                                           ("fcos", "fcos_head"), ("ssd", "ssd_head")])
def test_every_box_loss_in_every_head(tiny_config, tiny_shapes, loss, detector, head):
    cfg = tiny_config(detector, model={head: {"loss_bbox": {"type": loss}}})
    train_step(cfg, tiny_shapes)


@pytest.mark.parametrize("backbone", BACKBONES.names())
def test_every_backbone_in_faster_rcnn(tiny_config, tiny_shapes, backbone):
    overrides = {"backbone": {"type": backbone}}
    if backbone == "mobilenet_v3_large":  # three levels (strides 8-32) plus the pooled one
        overrides["anchors"] = {"sizes": [[16], [32], [64], [128]]}
    if backbone == "mobilenet_v3_large_fpn":  # two levels (strides 16, 32) plus the pooled one
        overrides["anchors"] = {"sizes": [[16], [32], [64]]}
    cfg = tiny_config("faster_rcnn", model=overrides)
    train_step(cfg, tiny_shapes)


def test_fixed_balancer_scales_the_roi_terms(tiny_config, tiny_shapes):
    plain, _ = train_step(tiny_config("faster_rcnn"), tiny_shapes)
    torch.manual_seed(0)
    cfg = tiny_config("faster_rcnn", model={"roi_head": {"balancer": {"type": "fixed",
                                                                       "weights": {"loss_box_reg": 0.0}}}})
    balanced, _ = train_step(cfg, tiny_shapes)
    assert balanced["loss_box_reg"].item() == 0.0 and plain["loss_box_reg"].item() > 0


def test_bad_slot_arguments_are_config_errors(tiny_config, tiny_shapes):
    ds = CocoDetection(tiny_shapes / "annotations/train.json", tiny_shapes / "train")
    with pytest.raises(ConfigError, match=r"model.roi_head.sampler: sampler 'random' has no argument 'nmu'"):
        build_detector(tiny_config(model={"roi_head": {"sampler": {"nmu": 3}}}).model, ds.label_map)
    with pytest.raises(ConfigError, match=r"model.anchors.sizes has 4 entries but the neck outputs 5 levels"):
        build_detector(tiny_config(model={"anchors": {"sizes": [[8]] * 4}}).model, ds.label_map)
    with pytest.raises(ConfigError, match=r"model.type: unknown detector type 'faster_rnn'"):
        build_detector(tiny_config(model={"type": "faster_rnn"}).model, ds.label_map)
