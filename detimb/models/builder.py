"""Build a detector from ``cfg.model`` around torchvision's detector classes.

Faster R-CNN and Mask R-CNN are torchvision's ``GeneralizedRCNN`` with detimb's RPN and
RoI heads injected (the same module names as torchvision's ``FasterRCNN``/``MaskRCNN``, so
state dicts are interchangeable); RetinaNet is torchvision's with detimb's head.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import torch
from omegaconf import DictConfig
from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import MultiScaleRoIAlign

from detimb.config import to_dict
from detimb.data.label_map import LabelMap
from detimb.errors import ConfigError
from detimb.losses import BALANCERS, BOX_LOSSES, CLS_LOSSES, SigmoidFocalLoss, init_classification_prior
from detimb.models.backbones import BACKBONES, probe_outputs
from detimb.models.heads import DetimbRetinaNet, DetimbRetinaNetHead, DetimbRoIHeads, DetimbRPN
from detimb.models.heads.dense import DenseHead
from detimb.models.heads.adaptive_pooling import AdaptivePoolingBoxHead, AllLevelsRoIAlign
from detimb.models.necks import NECKS, BackboneWithNeck
from detimb.models.transform import DetectionTransform
from detimb.models.segmentor import SemanticSegmentor
from detimb.models.transform import SegmentationTransform
from detimb.registry import Registry, closest
from detimb.samplers import SAMPLERS, FocalSampler

DETECTORS = Registry("detector")


def build_backbone_with_neck(cfg: DictConfig) -> tuple[BackboneWithNeck, list[str]]:
    """The backbone and neck, and the names of the neck's levels (pooled levels excluded)."""
    body = BACKBONES.build(to_dict(cfg.backbone), "model.backbone")
    neck = NECKS.build(to_dict(cfg.neck), "model.neck", in_channels_list=body.out_channels_list)
    backbone = BackboneWithNeck(body, neck)
    return backbone, list(probe_outputs(backbone))


def _anchor_generator(cfg: DictConfig, levels: list[str]) -> AnchorGenerator:
    sizes = tuple(tuple(int(s) for s in level) for level in cfg.anchors.sizes)
    if len(sizes) != len(levels):
        raise ConfigError(
            f"model.anchors.sizes has {len(sizes)} entries but the neck outputs {len(levels)} levels"
            f" ({', '.join(levels)}); give one list of sizes per level"
        )
    return AnchorGenerator(sizes, (tuple(float(a) for a in cfg.anchors.aspect_ratios),) * len(sizes))


def _build_slot(registry: Registry, spec: Any, where: str) -> Any:
    return registry.build(to_dict(spec), where)


HEAD_FORMS = {"model.rpn": "sigmoid", "model.roi_head": "softmax", "model.retina_head": "sigmoid"}


def _sampler_and_loss(head_cfg: DictConfig, where: str, class_counts: list[int] | None) -> tuple[Any, Any]:
    """A head's sampler and classification loss, refusing a focal factor applied twice.
    Losses that weigh classes by frequency receive the training set's ``class_counts``."""
    sampler = _build_slot(SAMPLERS, head_cfg.sampler, f"{where}.sampler")
    spec = to_dict(head_cfg.loss_cls)
    factory = CLS_LOSSES.get(spec.get("type", ""), f"{where}.loss_cls")
    takes_counts = "class_counts" in inspect.signature(factory).parameters
    loss = CLS_LOSSES.build(spec, f"{where}.loss_cls", **({"class_counts": class_counts} if takes_counts else {}))
    if getattr(loss, "form", HEAD_FORMS[where]) != HEAD_FORMS[where]:
        raise ConfigError(f"{where}.loss_cls: '{spec['type']}' is a {loss.form} loss but this head's classifier is"
                          f" {HEAD_FORMS[where]}; choose from "
                          + ", ".join(n for n in CLS_LOSSES.names() if CLS_LOSSES.get(n).form == HEAD_FORMS[where]))
    if isinstance(sampler, FocalSampler) and isinstance(loss, SigmoidFocalLoss):
        raise ConfigError(f"{where}: the focal sampler already applies the focal factor; with it use"
                          f" loss_cls: {{type: binary_cross_entropy}} (or cross_entropy), not sigmoid_focal")
    return sampler, loss


def _balancer(head_cfg: DictConfig, where: str) -> nn.Module | None:
    return None if head_cfg.balancer is None else _build_slot(BALANCERS, head_cfg.balancer, f"{where}.balancer")


MASK_PIXEL_LOSSES = ("cross_entropy", "focal", "dice")


def _mask_loss(roi_cfg: DictConfig) -> nn.Module | None:
    """``model.roi_head.loss_mask``: null keeps torchvision's BCE; else one of the pixel
    losses that read the same on a binary mask (class weights and rare classes do not)."""
    if roi_cfg.loss_mask is None:
        return None
    spec = to_dict(roi_cfg.loss_mask)
    if spec.get("type") not in MASK_PIXEL_LOSSES or spec.get("class_weight") is not None:
        raise ConfigError(f"model.roi_head.loss_mask: choose one of {', '.join(MASK_PIXEL_LOSSES)} (without"
                          f" class_weight) or null for torchvision's BCE; got {spec}")
    return CLS_LOSSES.build(spec, "model.roi_head.loss_mask")


def _two_stage(cfg: DictConfig, num_classes: int, with_masks: bool, class_counts: list[int] | None) -> GeneralizedRCNN:
    backbone, levels = build_backbone_with_neck(cfg)
    anchors = _anchor_generator(cfg, levels)
    channels = backbone.out_channels
    rpn_cfg, roi_cfg = cfg.rpn, cfg.roi_head
    rpn_head = RPNHead(channels, anchors.num_anchors_per_location()[0])
    if rpn_cfg.init_prior is not None:
        init_classification_prior(rpn_head.cls_logits.bias, rpn_cfg.init_prior, softmax=False)
    rpn_balancer = _balancer(rpn_cfg, "model.rpn")
    if getattr(rpn_balancer, "adds_terms", False):
        raise ConfigError("model.rpn.balancer: carl adds a loss term, which the RPN cannot return;"
                          " use it in model.roi_head or model.retina_head")
    rpn = DetimbRPN(
        anchors, rpn_head,
        rpn_cfg.fg_iou_thresh, rpn_cfg.bg_iou_thresh,
        {"training": rpn_cfg.pre_nms_top_n_train, "testing": rpn_cfg.pre_nms_top_n_test},
        {"training": rpn_cfg.post_nms_top_n_train, "testing": rpn_cfg.post_nms_top_n_test},
        rpn_cfg.nms_thresh, rpn_cfg.score_thresh,
        *_sampler_and_loss(rpn_cfg, "model.rpn", None),
        loss_bbox=_build_slot(BOX_LOSSES, rpn_cfg.loss_bbox, "model.rpn.loss_bbox"),
        balancer=rpn_balancer,
    )
    roi_levels = [name for name in levels if name != "pool"]
    size = roi_cfg.roi_output_size
    mask_parts: dict[str, nn.Module] = {}
    if with_masks:
        layers = list(roi_cfg.mask_layers)
        mask_parts = {
            "mask_roi_pool": MultiScaleRoIAlign(roi_levels, roi_cfg.mask_roi_output_size, roi_cfg.sampling_ratio),
            "mask_head": MaskRCNNHeads(channels, layers, 1),
            "mask_predictor": MaskRCNNPredictor(layers[-1], layers[-1], num_classes),
        }
    if roi_cfg.adaptive_pooling.enabled:
        box_pool: nn.Module = AllLevelsRoIAlign(roi_levels, size, roi_cfg.sampling_ratio)
        box_head: nn.Module = AdaptivePoolingBoxHead(len(roi_levels), channels * size**2, roi_cfg.representation_size,
                                                     roi_cfg.adaptive_pooling.fuse)
    else:
        box_pool = MultiScaleRoIAlign(roi_levels, size, roi_cfg.sampling_ratio)
        box_head = TwoMLPHead(channels * size**2, roi_cfg.representation_size)
    predictor = FastRCNNPredictor(roi_cfg.representation_size, num_classes)
    if roi_cfg.init_prior is not None:
        init_classification_prior(predictor.cls_score.bias, roi_cfg.init_prior, softmax=True)
    roi_heads = DetimbRoIHeads(
        box_pool,
        box_head,
        predictor,
        roi_cfg.fg_iou_thresh, roi_cfg.bg_iou_thresh, tuple(roi_cfg.bbox_reg_weights),
        roi_cfg.score_thresh, roi_cfg.nms_thresh, roi_cfg.detections_per_img,
        *_sampler_and_loss(roi_cfg, "model.roi_head", class_counts),
        loss_bbox=_build_slot(BOX_LOSSES, roi_cfg.loss_bbox, "model.roi_head.loss_bbox"),
        balancer=_balancer(roi_cfg, "model.roi_head"),
        add_gt_as_proposals=roi_cfg.add_gt_as_proposals,
        loss_mask=_mask_loss(roi_cfg) if with_masks else None,
        **mask_parts,
    )
    return GeneralizedRCNN(backbone, rpn, roi_heads, _transform(cfg))


def _transform(cfg: DictConfig) -> DetectionTransform:
    t = cfg.transform
    return DetectionTransform(t.resize, t.min_size, t.max_size, list(t.image_mean), list(t.image_std),
                              t.size_divisible)


@DETECTORS.register("faster_rcnn")
def faster_rcnn(cfg: DictConfig, num_classes: int, class_counts: list[int] | None = None) -> GeneralizedRCNN:
    """Faster R-CNN (Ren et al., NeurIPS 2015) with torchvision's defaults."""
    return _two_stage(cfg, num_classes, False, class_counts)


@DETECTORS.register("mask_rcnn")
def mask_rcnn(cfg: DictConfig, num_classes: int, class_counts: list[int] | None = None) -> GeneralizedRCNN:
    """Mask R-CNN (He et al., ICCV 2017) with torchvision's defaults."""
    return _two_stage(cfg, num_classes, True, class_counts)


@DETECTORS.register("retinanet")
def retinanet(cfg: DictConfig, num_classes: int, class_counts: list[int] | None = None) -> DetimbRetinaNet:
    """RetinaNet (Lin et al., ICCV 2017) with torchvision's defaults."""
    backbone, levels = build_backbone_with_neck(cfg)
    anchors = _anchor_generator(cfg, levels)
    h = cfg.retina_head
    head = DetimbRetinaNetHead(
        backbone.out_channels, anchors.num_anchors_per_location()[0], num_classes,
        *_sampler_and_loss(h, "model.retina_head", class_counts),
        loss_bbox=_build_slot(BOX_LOSSES, h.loss_bbox, "model.retina_head.loss_bbox"),
        prior_probability=h.prior_probability,
        balancer=_balancer(h, "model.retina_head"),
    )
    return DetimbRetinaNet(
        backbone, num_classes, anchors, head, _transform(cfg), score_thresh=h.score_thresh,
        nms_thresh=h.nms_thresh, detections_per_img=h.detections_per_img, fg_iou_thresh=h.fg_iou_thresh,
        bg_iou_thresh=h.bg_iou_thresh, topk_candidates=h.topk_candidates,
    )


SEGMENTORS = Registry("segmentation model")


def _dense_loss(spec: dict[str, Any], label_map: LabelMap, class_counts: list[int] | None, where: str) -> nn.Module:
    factory = CLS_LOSSES.get(spec.get("type", ""), where)
    params = inspect.signature(factory).parameters
    extra: dict[str, Any] = {}
    if "rare_classes" in spec:
        spec = {**spec, "rare_classes": label_map.labels_of(spec["rare_classes"], f"{where}.rare_classes")}
    if "class_counts" in params:
        extra["class_counts"] = class_counts
    loss = CLS_LOSSES.build(spec, where, **extra)
    if getattr(loss, "form", "softmax") != "softmax":
        raise ConfigError(f"{where}: '{spec['type']}' is a {loss.form} loss; the dense head is a softmax classifier."
                          " Choose from " + ", ".join(n for n in CLS_LOSSES.names()
                                                      if CLS_LOSSES.get(n).form == "softmax"))
    return loss


@SEGMENTORS.register("semantic_seg")
def semantic_seg(cfg: DictConfig, label_map: LabelMap, class_counts: list[int] | None = None,
                 ignore_index: int = 255) -> SemanticSegmentor:
    """Semantic segmentation: backbone + neck + dense head (Panoptic FPN's semantic branch).
    ``class_counts``: training pixels per class (for class-weighted losses)."""
    backbone, levels = build_backbone_with_neck(cfg)
    levels = [name for name in levels if name != "pool"]
    h = cfg.head
    if h.type != "dense":
        raise ConfigError(f"model.head.type: only 'dense' exists, got {h.type!r}")
    sampler = _build_slot(SAMPLERS, h.sampler, "model.head.sampler")
    try:
        head = DenseHead(backbone.out_channels, len(levels), label_map.num_classes, sampler,
                         _dense_loss(to_dict(h.loss), label_map, class_counts, "model.head.loss"),
                         channels=h.channels, ignore_index=ignore_index)
    except ValueError as err:  # the head refuses samplers that need box geometry
        raise ConfigError(f"model.head.sampler: {err}") from err
    t = cfg.transform
    transform = SegmentationTransform(t.resize, t.min_size, t.max_size, list(t.image_mean), list(t.image_std),
                                      t.size_divisible, ignore_index)
    return SemanticSegmentor(backbone, levels, head, transform)


def build_model(cfg: DictConfig, label_map: LabelMap, class_counts: list[int] | None = None,
                ignore_index: int = 255) -> nn.Module:
    """The detector or segmentation model ``cfg.model`` describes (see ``build_detector``)."""
    if cfg.type in SEGMENTORS.names():
        model: nn.Module = SEGMENTORS.get(cfg.type)(cfg, label_map, class_counts, ignore_index)
        if cfg.weights:
            state = torch.load(cfg.weights, map_location="cpu", weights_only=True)
            model.load_state_dict(state.get("model", state))
        return model
    if cfg.type not in DETECTORS.names():
        raise ConfigError(f"model.type: unknown model {cfg.type!r}"
                          f"{closest(str(cfg.type), DETECTORS.names() + SEGMENTORS.names())}")
    return build_detector(cfg, label_map, class_counts)


def is_segmentation(cfg: DictConfig) -> bool:
    return cfg.type in SEGMENTORS.names()


def build_detector(cfg: DictConfig, label_map: LabelMap, class_counts: list[int] | None = None) -> nn.Module:
    """The detector ``cfg.model`` describes, for the classes of ``label_map``; loads
    ``cfg.model.weights`` (a local file) when set. ``class_counts``: training instances per
    class in label order, for losses that weigh classes by frequency."""
    factory: Callable[..., nn.Module] = DETECTORS.get(cfg.type, "model.type")
    model = factory(cfg, label_map.num_classes, class_counts)
    if cfg.weights:
        state = torch.load(cfg.weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("model", state))
    return model


def uses_masks(cfg: DictConfig) -> bool:
    return cfg.type == "mask_rcnn"


__all__ = ["DETECTORS", "SEGMENTORS", "build_backbone_with_neck", "build_detector", "build_model", "is_segmentation",
           "uses_masks"]
