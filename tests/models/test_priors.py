"""Sampling-free's optimal prior: the counting pass, the formula, the cache, the checkpoint."""

import math

import pytest
import torch

from detimb.data.coco import CocoDetection
from detimb.models import priors
from detimb.models.priors import AnchorCounts, apply_priors, count_anchors, optimal_priors
from detimb.engine.trainer import Trainer
from detimb.models import build_detector


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DETIMB_CACHE_DIR", str(tmp_path / "cache"))


def test_prior_bias_and_adaptive_threshold_by_hand(tiny_config, tiny_shapes):
    # 30 foreground, 2970 background anchors, 6 classes: p = 30 / 3000 / 6 = 1/600
    p = AnchorCounts(30, 2970).prior(6)
    assert p == pytest.approx(1 / 600)
    cfg = tiny_config("retinanet", model={"retina_head": {"adaptive_score_thresh": True}})
    ds = CocoDetection(tiny_shapes / "annotations/train.json", tiny_shapes / "train")
    model = build_detector(cfg.model, ds.label_map)
    apply_priors(model, cfg, {"retina_head": p}, set_bias=True)
    bias = model.head.classification_head.cls_logits.bias
    assert torch.allclose(bias, torch.full_like(bias, -math.log(599.0)))
    assert model.score_thresh == pytest.approx(7 / 600)  # p * (K + 1), as the released code's NUM_CLASSES


def test_an_image_without_ground_truth_counts_every_anchor_as_background(tiny_config, tiny_shapes):
    ds = CocoDetection(tiny_shapes / "annotations/train.json", tiny_shapes / "train")
    image, target = ds[0]
    empty = [(image, {**target, "boxes": target["boxes"][:0], "labels": target["labels"][:0]})]
    model = build_detector(tiny_config("retinanet").model, ds.label_map)
    with torch.no_grad():
        features = model.backbone(image[None])
    per_location = model.anchor_generator.num_anchors_per_location()[0]
    want = sum(f.shape[-2] * f.shape[-1] for f in features.values()) * per_location
    assert count_anchors(model, "retina_head", empty) == AnchorCounts(0, want)
    counts = count_anchors(model, "retina_head", [ds[0]])
    assert counts.foreground > 0 and counts.foreground + counts.background <= want



class Reached(Exception):
    """The counting pass handed the transform its first image on the model's device."""


class DeviceCheckingTransform(torch.nn.Module):
    """Stands in for the model's transform: refuses inputs off the model's device."""

    def __init__(self, device: torch.device) -> None:
        super().__init__()
        self.device = device

    def forward(self, images, targets):
        got = {images[0].device, *(v.device for v in targets[0].values())}
        if got != {self.device}:
            raise AssertionError(f"inputs on {got}, the model on {self.device}")
        raise Reached


def test_the_counting_pass_moves_the_data_to_the_models_device(tiny_config, tiny_shapes):
    ds = CocoDetection(tiny_shapes / "annotations/train.json", tiny_shapes / "train")
    model = build_detector(tiny_config("retinanet").model, ds.label_map).to("meta")  # meta stands in for CUDA
    model.transform = DeviceCheckingTransform(torch.device("meta"))
    with pytest.raises(Reached):
        count_anchors(model, "retina_head", [ds[0]])

def test_the_pass_runs_once_per_architecture_and_dataset(tiny_config, tiny_shapes, monkeypatch):
    cfg = tiny_config("faster_rcnn", model={"rpn": {"optimal_prior": True}})
    ds = CocoDetection(cfg.data.train.ann_file, cfg.data.train.img_dir)
    model = build_detector(cfg.model, ds.label_map)
    first = optimal_priors(cfg, model, ds, ds.label_map.num_classes)
    assert set(first) == {"rpn"} and 0 < first["rpn"] < 1

    def refuse(*args, **kwargs):
        raise AssertionError("counted again")

    monkeypatch.setattr(priors, "count_anchors", refuse)
    assert optimal_priors(cfg, model, ds, ds.label_map.num_classes) == first
    other = tiny_config("faster_rcnn", model={"rpn": {"optimal_prior": True, "fg_iou_thresh": 0.6}})
    with pytest.raises(AssertionError, match="counted again"):
        optimal_priors(other, model, ds, ds.label_map.num_classes)


def test_training_sets_the_bias_and_checkpoints_carry_the_prior(tiny_config, tmp_path):
    cfg = tiny_config("retinanet", model={"retina_head": {"optimal_prior": True, "adaptive_score_thresh": True,
                                                          "sampler": {"type": "all"},
                                                          "loss_cls": {"type": "binary_cross_entropy"},
                                                          "balancer": {"type": "guided"}}},
                      train={"schedule": {"max_iters": 1}})
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    p = trainer.priors["retina_head"]
    bias = trainer.model.head.classification_head.cls_logits.bias
    assert torch.allclose(bias, torch.full_like(bias, -math.log((1 - p) / p)))
    assert trainer.model.score_thresh == pytest.approx(p * 7)
    assert trainer.checkpoint_state()["priors"] == {"retina_head": p}
