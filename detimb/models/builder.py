"""Build a detector from ``cfg.model`` around torchvision's detector classes.

Faster R-CNN and Mask R-CNN are torchvision's ``GeneralizedRCNN`` with detimb's RPN and
RoI heads injected (torchvision's module names for the heads); RetinaNet is torchvision's
with detimb's head.
"""

from __future__ import annotations

import copy
import logging
from functools import partial
from typing import Callable

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.rpn import RPNHead
from torchvision.models.detection.ssd import ssd300_vgg16
from torchvision.models.detection.ssdlite import ssdlite320_mobilenet_v3_large
from torchvision.ops import FrozenBatchNorm2d, MultiScaleRoIAlign

from detimb.config import to_dict
from detimb.data.label_map import LabelMap
from detimb.errors import ConfigError
from detimb.losses import CLS_LOSSES, ClassificationLoss, Form, init_classification_prior
from detimb.losses.statistics import ClassStatistics
from detimb.models.backbones import BACKBONES, probe_outputs
from detimb.models.calibrate import apply_calibration, configured_calibration
from detimb.models.heads import DetimbRetinaNet, DetimbRetinaNetHead, DetimbRoIHeads, DetimbRPN
from detimb.models.heads.coders import LinearBoxCoder
from detimb.models.heads.dense import DenseHead
from detimb.models.heads.fcos import DetimbFCOS, DetimbFCOSHead
from detimb.models.heads.ssd import DetimbSSD
from detimb.models.heads.adaptive_pooling import AdaptivePoolingBoxHead, AllLevelsRoIAlign
from detimb.models.head_specs import (
    DENSE_HEAD, FCOS_HEAD, RETINA_HEAD, ROI_HEAD, RPN, SSD_HEAD, build_objective,
)
from detimb.models.heads.objective import HeadObjective
from detimb.models.heads.predictors import CLS_PREDICTORS
from detimb.models.necks import NECKS, BackboneWithNeck
from detimb.models.necks.base import norm_layer
from detimb.models.weights import load_weights_file
from detimb.models.transform import DetectionTransform
from detimb.models.segmentor import SemanticSegmentor
from detimb.models.transform import SegmentationTransform
from detimb.registry import Registry, closest

DETECTORS = Registry("detector")
logger = logging.getLogger(__name__)

RPN_BOX_WEIGHTS = (1.0, 1.0, 1.0, 1.0)  # torchvision's RegionProposalNetwork
RETINA_BOX_WEIGHTS = (1.0, 1.0, 1.0, 1.0)  # torchvision's RetinaNet


def pretrained_architecture(cfg: DictConfig) -> bool:
    """Whether the model takes torchvision's pretrained defaults: ``model.pretrained``, or
    when it is null, whether detector weights are given."""
    return bool(cfg.weights) if cfg.pretrained is None else bool(cfg.pretrained)


def without_weight_files(cfg: DictConfig) -> DictConfig:
    """A copy of the full config ``cfg`` that builds the same architecture without reading
    ``model.weights`` or the backbone's ``weights`` file: a checkpoint holds every tensor,
    and restoring it must not need the files its training started from."""
    m = cfg.model
    backbone_file = isinstance(m.backbone, DictConfig) and m.backbone.get("weights") is not None
    out = copy.deepcopy(cfg)
    OmegaConf.set_readonly(out, False)
    out.model.pretrained = pretrained_architecture(m) or backbone_file
    out.model.weights = None
    if backbone_file:
        out.model.backbone.weights = None
    return out


def build_backbone_with_neck(cfg: DictConfig) -> tuple[BackboneWithNeck, list[str]]:
    """The backbone and neck, and the names of the neck's levels (pooled levels excluded).
    With detector weights to load, the backbone takes torchvision's pretrained defaults."""
    body = BACKBONES.build(to_dict(cfg.backbone), "model.backbone", pretrained=pretrained_architecture(cfg),
                           in_channels=cfg.in_channels)
    neck = NECKS.build(to_dict(cfg.neck), "model.neck", in_channels_list=body.out_channels_list)
    backbone = BackboneWithNeck(body.body, neck)
    return backbone, list(probe_outputs(backbone))


def _anchor_generator(cfg: DictConfig, levels: list[str]) -> AnchorGenerator:
    sizes = tuple(tuple(int(s) for s in level) for level in cfg.anchors.sizes)
    if len(sizes) != len(levels):
        raise ConfigError(
            f"model.anchors.sizes has {len(sizes)} entries but the neck outputs {len(levels)} levels"
            f" ({', '.join(levels)}); give one list of sizes per level"
        )
    return AnchorGenerator(sizes, (tuple(float(a) for a in cfg.anchors.aspect_ratios),) * len(sizes))


def _init_prior(bias: torch.Tensor, head_cfg: DictConfig, objective: HeadObjective, form: Form) -> None:
    """Set a classifier's bias from the head's ``init_prior`` or, without one, from its
    sampler's ``classifier_prior`` (the focal sampler's 0.01)."""
    prior = head_cfg.init_prior if head_cfg.init_prior is not None else objective.sampler.classifier_prior
    if prior is not None:
        init_classification_prior(bias, prior, softmax=form is Form.SOFTMAX)


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


def _roi_predictor(roi_cfg: DictConfig, loss: ClassificationLoss, num_classes: int, features: int
                   ) -> FastRCNNPredictor:
    """torchvision's ``FastRCNNPredictor`` on the box head's ``features``, its ``cls_score``
    sized and typed as the loss and ``cls_predictor`` say (K + 1 for softmax, K for sigmoid,
    ...); ``bbox_pred`` unchanged."""
    predictor = FastRCNNPredictor(features, num_classes)
    outputs = loss.roi_outputs(num_classes)
    spec = to_dict(roi_cfg.cls_predictor)
    if outputs != num_classes or spec.get("type") != "linear":
        predictor.cls_score = CLS_PREDICTORS.build(spec, "model.roi_head.cls_predictor",
                                                   in_features=features, out_features=outputs)
    return predictor


BOX_HEAD_KEYS = ("conv_layers", "fc_layers", "norm")


def _box_head(roi_cfg: DictConfig, channels: int, levels: int) -> tuple[nn.Module, int]:
    """The RoI box head and its output width: torchvision's TwoMLPHead (``box_head`` null),
    FastRCNNConvFCHead (``box_head: {conv_layers, fc_layers, norm}``, the v2 architectures), or
    PANet's adaptive pooling head."""
    size = roi_cfg.roi_output_size
    spec = to_dict(roi_cfg.box_head)
    if roi_cfg.adaptive_pooling.enabled:
        if spec is not None:
            raise ConfigError("model.roi_head.box_head: adaptive pooling has its own box head; set box_head: null")
        return AdaptivePoolingBoxHead(levels, channels * size**2, roi_cfg.representation_size,
                                      roi_cfg.adaptive_pooling.fuse), roi_cfg.representation_size
    if spec is None:
        return TwoMLPHead(channels * size**2, roi_cfg.representation_size), roi_cfg.representation_size
    unknown = sorted(set(spec) - set(BOX_HEAD_KEYS))
    if unknown or not spec.get("fc_layers"):
        raise ConfigError(f"model.roi_head.box_head: give conv_layers, fc_layers (at least one) and norm (null or bn);"
                          f" got {spec}")
    fc = [int(x) for x in spec["fc_layers"]]
    return FastRCNNConvFCHead((channels, size, size), [int(x) for x in spec.get("conv_layers") or []], fc,
                              norm_layer=norm_layer(spec.get("norm"))), fc[-1]


def _two_stage(cfg: DictConfig, label_map: LabelMap, with_masks: bool, class_stats: ClassStatistics | None
               ) -> GeneralizedRCNN:
    num_classes = label_map.num_classes
    backbone, levels = build_backbone_with_neck(cfg)
    anchors = _anchor_generator(cfg, levels)
    channels = backbone.out_channels
    rpn_cfg, roi_cfg = cfg.rpn, cfg.roi_head
    rpn_head = RPNHead(channels, anchors.num_anchors_per_location()[0], conv_depth=rpn_cfg.conv_depth)
    rpn_objective = build_objective(rpn_cfg, RPN, BoxCoder(RPN_BOX_WEIGHTS))
    _init_prior(rpn_head.cls_logits.bias, rpn_cfg, rpn_objective, Form.SIGMOID)
    rpn = DetimbRPN(
        anchors, rpn_head,
        rpn_cfg.fg_iou_thresh, rpn_cfg.bg_iou_thresh,
        {"training": rpn_cfg.pre_nms_top_n_train, "testing": rpn_cfg.pre_nms_top_n_test},
        {"training": rpn_cfg.post_nms_top_n_train, "testing": rpn_cfg.post_nms_top_n_test},
        rpn_cfg.nms_thresh, rpn_cfg.score_thresh, rpn_objective,
    )
    roi_levels = [name for name in levels if name != "pool"]
    size = roi_cfg.roi_output_size
    mask_parts: dict[str, nn.Module] = {}
    if with_masks:
        layers = list(roi_cfg.mask_layers)
        mask_parts = {
            "mask_roi_pool": MultiScaleRoIAlign(roi_levels, roi_cfg.mask_roi_output_size, roi_cfg.sampling_ratio),
            "mask_head": MaskRCNNHeads(channels, layers, 1, norm_layer=norm_layer(roi_cfg.mask_norm)),
            "mask_predictor": MaskRCNNPredictor(layers[-1], layers[-1], num_classes),
        }
    box_pool: nn.Module = (AllLevelsRoIAlign if roi_cfg.adaptive_pooling.enabled else MultiScaleRoIAlign)(
        roi_levels, size, roi_cfg.sampling_ratio)
    box_head, features = _box_head(roi_cfg, channels, len(roi_levels))
    roi_objective = build_objective(roi_cfg, ROI_HEAD, BoxCoder(tuple(roi_cfg.bbox_reg_weights)),
                                    class_stats=class_stats, label_map=label_map)
    predictor = _roi_predictor(roi_cfg, roi_objective.loss_cls, num_classes, features)
    _init_prior(predictor.cls_score.bias, roi_cfg, roi_objective, roi_objective.loss_cls.form)
    roi_heads = DetimbRoIHeads(
        box_pool,
        box_head,
        predictor,
        roi_cfg.fg_iou_thresh, roi_cfg.bg_iou_thresh, tuple(roi_cfg.bbox_reg_weights),
        roi_cfg.score_thresh, roi_cfg.nms_thresh, roi_cfg.detections_per_img, roi_objective,
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
def faster_rcnn(cfg: DictConfig, label_map: LabelMap, class_stats: ClassStatistics | None = None) -> GeneralizedRCNN:
    """Faster R-CNN (Ren et al., NeurIPS 2015) with torchvision's defaults."""
    return _two_stage(cfg, label_map, with_masks=False, class_stats=class_stats)


@DETECTORS.register("mask_rcnn")
def mask_rcnn(cfg: DictConfig, label_map: LabelMap, class_stats: ClassStatistics | None = None) -> GeneralizedRCNN:
    """Mask R-CNN (He et al., ICCV 2017) with torchvision's defaults."""
    return _two_stage(cfg, label_map, with_masks=True, class_stats=class_stats)


@DETECTORS.register("retinanet")
def retinanet(cfg: DictConfig, label_map: LabelMap, class_stats: ClassStatistics | None = None) -> DetimbRetinaNet:
    """RetinaNet (Lin et al., ICCV 2017) with torchvision's defaults."""
    num_classes = label_map.num_classes
    backbone, levels = build_backbone_with_neck(cfg)
    anchors = _anchor_generator(cfg, levels)
    h = cfg.retina_head
    objective = build_objective(h, RETINA_HEAD, BoxCoder(RETINA_BOX_WEIGHTS), class_stats=class_stats,
                                label_map=label_map)
    if h.norm not in (None, "gn"):
        raise ConfigError(f"model.retina_head.norm: null or gn (GroupNorm with 32 groups, v2), got {h.norm!r}")
    head = DetimbRetinaNetHead(backbone.out_channels, anchors.num_anchors_per_location()[0], num_classes, objective,
                               prior_probability=h.prior_probability,
                               norm_layer=None if h.norm is None else partial(nn.GroupNorm, 32))
    return DetimbRetinaNet(
        backbone, num_classes, anchors, head, _transform(cfg), score_thresh=h.score_thresh,
        nms_thresh=h.nms_thresh, detections_per_img=h.detections_per_img, fg_iou_thresh=h.fg_iou_thresh,
        bg_iou_thresh=h.bg_iou_thresh, topk_candidates=h.topk_candidates,
    )


@DETECTORS.register("fcos")
def fcos(cfg: DictConfig, label_map: LabelMap, class_stats: ClassStatistics | None = None) -> DetimbFCOS:
    """FCOS (Tian et al., ICCV 2019) with torchvision's defaults: point anchors, centre
    sampling, focal loss, GIoU and centerness."""
    num_classes = label_map.num_classes
    backbone, levels = build_backbone_with_neck(cfg)
    anchors = _anchor_generator(cfg, levels)
    if anchors.num_anchors_per_location()[0] != 1:
        raise ConfigError("model.anchors: FCOS takes one anchor point per location: one size per level and"
                          " aspect_ratios [1.0]")
    if backbone.out_channels % 32:
        raise ConfigError(f"model.neck.out_channels: FCOS's head normalises with GroupNorm(32, channels), so the"
                          f" neck's {backbone.out_channels} channels must be a multiple of 32")
    h = cfg.fcos_head
    objective = build_objective(h, FCOS_HEAD, LinearBoxCoder(normalize_by_size=True), class_stats=class_stats,
                                label_map=label_map)
    head = DetimbFCOSHead(backbone.out_channels, 1, num_classes, objective, num_convs=h.num_convs,
                          prior_probability=h.prior_probability)
    return DetimbFCOS(backbone, num_classes, anchors, head, _transform(cfg),
                      center_sampling_radius=h.center_sampling_radius, score_thresh=h.score_thresh,
                      nms_thresh=h.nms_thresh, detections_per_img=h.detections_per_img,
                      topk_candidates=h.topk_candidates)


VGG16_STAGE_STARTS = (0, 4, 9, 16, 23)  # vgg16().features: where each of the 5 conv stages starts


def _freeze_ssd_backbone(model: nn.Module, variant: str, trainable: int | None, pretrained: bool) -> None:
    """torchvision's trainable stages (``_vgg_extractor``), which its builders apply only to
    pretrained backbones and detimb's builder must apply when it loads the weights itself:
    VGG-16 trains 4 of 5 stages from weights, 5 without; SSDlite always all 6."""
    if variant == "ssdlite320_mobilenet_v3_large":
        if trainable not in (None, 6):
            raise ConfigError("model.ssd_head.trainable_layers: SSDlite trains all 6 stages (torchvision's only"
                              " setting); leave it null")
        return
    trainable = trainable if trainable is not None else (4 if pretrained else 5)
    if not 1 <= trainable <= 5:
        raise ConfigError(f"model.ssd_head.trainable_layers: VGG-16 has stages 1-5, got {trainable}")
    for layer in list(model.backbone.features)[:VGG16_STAGE_STARTS[5 - trainable]]:
        for parameter in layer.parameters():
            parameter.requires_grad_(False)


SSD_VARIANTS: dict[str, Callable[..., nn.Module]] = {"ssd300_vgg16": ssd300_vgg16,
                                                     "ssdlite320_mobilenet_v3_large": ssdlite320_mobilenet_v3_large}


@DETECTORS.register("ssd")
def ssd(cfg: DictConfig, label_map: LabelMap, class_stats: ClassStatistics | None = None) -> DetimbSSD:
    """SSD300 with VGG-16 (Liu et al., ECCV 2016) or SSDlite320 with MobileNetV3-Large
    (Sandler et al. 2018), as torchvision's builders make them, with detimb's objective."""
    h = cfg.ssd_head
    if h.variant not in SSD_VARIANTS:
        raise ConfigError(f"model.ssd_head.variant: unknown {h.variant!r}"
                          f"{closest(str(h.variant), list(SSD_VARIANTS))}; choose {' or '.join(SSD_VARIANTS)}")
    made = SSD_VARIANTS[h.variant](weights=None, weights_backbone=None, num_classes=label_map.num_classes)
    _freeze_ssd_backbone(made, h.variant, h.trainable_layers, pretrained=pretrained_architecture(cfg))
    objective = build_objective(h, SSD_HEAD, BoxCoder(tuple(h.bbox_reg_weights)), class_stats=class_stats,
                                label_map=label_map)
    t = made.transform
    return DetimbSSD(made.backbone, made.anchor_generator, tuple(t.fixed_size), label_map.num_classes,
                     image_mean=list(t.image_mean), image_std=list(t.image_std), head=made.head,
                     score_thresh=h.score_thresh, nms_thresh=h.nms_thresh, detections_per_img=h.detections_per_img,
                     iou_thresh=h.iou_thresh, topk_candidates=h.topk_candidates, objective=objective)


SEGMENTORS = Registry("segmentation model")


@SEGMENTORS.register("semantic_seg")
def semantic_seg(cfg: DictConfig, label_map: LabelMap, class_stats: ClassStatistics | None = None,
                 ignore_index: int = 255) -> SemanticSegmentor:
    """Semantic segmentation: backbone + neck + dense head (Panoptic FPN's semantic branch).
    ``class_stats``: training pixels per class as instances (for class-weighted losses)."""
    backbone, levels = build_backbone_with_neck(cfg)
    levels = [name for name in levels if name != "pool"]
    h = cfg.head
    if h.type != "dense":
        raise ConfigError(f"model.head.type: only 'dense' exists, got {h.type!r}")
    objective = build_objective(h, DENSE_HEAD, None, class_stats=class_stats, label_map=label_map)
    try:
        head = DenseHead(backbone.out_channels, len(levels), label_map.num_classes, objective,
                         channels=h.channels, ignore_index=ignore_index)
    except ValueError as err:  # the head refuses samplers that need box geometry
        raise ConfigError(f"model.head.sampler: {err}") from err
    t = cfg.transform
    transform = SegmentationTransform(t.resize, t.min_size, t.max_size, list(t.image_mean), list(t.image_std),
                                      t.size_divisible, ignore_index)
    return SemanticSegmentor(backbone, levels, head, transform)


def build_model(cfg: DictConfig, label_map: LabelMap, class_stats: ClassStatistics | None = None,
                ignore_index: int = 255) -> nn.Module:
    """The detector or segmentation model ``cfg.model`` describes (see ``build_detector``)."""
    if class_stats is not None and not isinstance(class_stats, ClassStatistics):
        raise TypeError(f"class_stats must be a detimb.losses.ClassStatistics, got {type(class_stats).__name__}"
                        " (ClassStatistics.from_instances(counts) builds one from instance counts)")
    if cfg.type in SEGMENTORS.names():
        model: nn.Module = SEGMENTORS.get(cfg.type)(cfg, label_map, class_stats, ignore_index)
        _load_configured_weights(model, cfg)
        return model
    if cfg.type not in DETECTORS.names():
        raise ConfigError(f"model.type: unknown model {cfg.type!r}"
                          f"{closest(str(cfg.type), DETECTORS.names() + SEGMENTORS.names())}")
    return build_detector(cfg, label_map, class_stats)


def is_segmentation(cfg: DictConfig) -> bool:
    return cfg.type in SEGMENTORS.names()


def build_detector(cfg: DictConfig, label_map: LabelMap, class_stats: ClassStatistics | None = None) -> nn.Module:
    """The detector ``cfg.model`` describes, for the classes of ``label_map``; loads
    ``cfg.model.weights`` (a local file) when set. ``class_stats``: the training set's
    class statistics, for losses that weigh classes by frequency and for the post-hoc
    calibration (without them, restoring a checkpoint, the caller calibrates)."""
    factory: Callable[..., nn.Module] = DETECTORS.get(cfg.type, "model.type")
    model = factory(cfg, label_map, class_stats)
    _load_configured_weights(model, cfg)
    if class_stats is not None:
        apply_calibration(model, configured_calibration(cfg), class_stats, cfg.type)
    return model


V1_ARCHS = ("fasterrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn", "retinanet_resnet50_fpn")  # torchvision's COCO_V1


def _load_configured_weights(model: nn.Module, cfg: DictConfig) -> None:
    """``model.weights`` loaded, its report logged. torchvision's v1 COCO weights were
    trained with FrozenBatchNorm2d eps 0, which its builders restore (``overwrite_eps``); so
    does detimb for those architectures."""
    if not cfg.weights:
        return
    report = load_weights_file(model, cfg.weights, strict_classes=cfg.weights_strict)
    logger.info(report.summary())
    if cfg.arch in V1_ARCHS:
        for module in model.modules():
            if isinstance(module, FrozenBatchNorm2d):
                module.eps = 0.0


def uses_masks(cfg: DictConfig) -> bool:
    return cfg.type == "mask_rcnn"


__all__ = ["DETECTORS", "SEGMENTORS", "build_backbone_with_neck", "build_detector", "build_model", "is_segmentation",
           "uses_masks"]
