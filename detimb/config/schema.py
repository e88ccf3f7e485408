"""The config schema: every key a detimb config may hold, with its type and default.

Module slots (``model.backbone``, ``model.neck``, ``model.rpn.sampler``, ...) are
mappings with a ``type`` and that type's arguments; their arguments are checked
against the registered class's constructor when the model is built.
Defaults reproduce torchvision's Faster R-CNN / RetinaNet / Mask R-CNN.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING


def _slot(**kw: Any) -> Any:
    return field(default_factory=lambda: dict(kw))


@dataclass
class TransformConfig:
    """torchvision's GeneralizedRCNNTransform, made explicit: set ``resize: false`` to feed
    images at their own size (they are still normalised and padded to ``size_divisible``)."""

    resize: bool = True
    min_size: int = 800
    max_size: int = 1333
    image_mean: List[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    image_std: List[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    size_divisible: int = 32


@dataclass
class AnchorConfig:
    """One tuple of sizes per feature level the neck outputs (torchvision's AnchorGenerator)."""

    sizes: List[List[int]] = field(default_factory=lambda: [[32], [64], [128], [256], [512]])
    aspect_ratios: List[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])


@dataclass
class RPNConfig:
    conv_depth: int = 1  # torchvision's RPNHead; 2 in the v2 architectures
    fg_iou_thresh: float = 0.7
    bg_iou_thresh: float = 0.3
    pre_nms_top_n_train: int = 2000
    pre_nms_top_n_test: int = 1000
    post_nms_top_n_train: int = 2000
    post_nms_top_n_test: int = 1000
    nms_thresh: float = 0.7
    score_thresh: float = 0.0
    sampler: Dict[str, Any] = _slot(type="random", num=256, pos_fraction=0.5)
    loss_cls: Dict[str, Any] = _slot(type="binary_cross_entropy")
    loss_bbox: Dict[str, Any] = _slot(type="smooth_l1", beta=1.0 / 9.0)
    balancer: Optional[Dict[str, Any]] = None
    init_prior: Optional[float] = None
    optimal_prior: bool = False  # sampling-free's bias from the training set's anchor counts


@dataclass
class AdaptivePoolingConfig:
    """PANet's adaptive feature pooling in the box head: ``fuse`` max (the paper's) or sum."""

    enabled: bool = False
    fuse: str = "max"


@dataclass
class RoIHeadConfig:
    fg_iou_thresh: float = 0.5
    bg_iou_thresh: float = 0.5
    sampler: Dict[str, Any] = _slot(type="random", num=512, pos_fraction=0.25)
    loss_cls: Dict[str, Any] = _slot(type="cross_entropy")
    loss_bbox: Dict[str, Any] = _slot(type="smooth_l1", beta=1.0 / 9.0)
    balancer: Optional[Dict[str, Any]] = None
    init_prior: Optional[float] = None
    cls_predictor: Dict[str, Any] = _slot(type="linear")  # or {type: normed_linear, temperature: 20}
    calibration: Optional[Dict[str, Any]] = None  # post-hoc: {type: norcal, gamma: 0.5} or {type: logit_adjustment}
    add_gt_as_proposals: bool = True
    bbox_reg_weights: List[float] = field(default_factory=lambda: [10.0, 10.0, 5.0, 5.0])
    roi_output_size: int = 7
    sampling_ratio: int = 2
    representation_size: int = 1024
    # torchvision's box heads: null is TwoMLPHead (two fc layers of representation_size);
    # {conv_layers: [256, 256, 256, 256], fc_layers: [1024], norm: bn} is FastRCNNConvFCHead (v2)
    box_head: Optional[Dict[str, Any]] = None
    mask_norm: Optional[str] = None  # the mask head's norm: null, or bn (v2)
    adaptive_pooling: AdaptivePoolingConfig = field(default_factory=AdaptivePoolingConfig)
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_img: int = 100
    mask_roi_output_size: int = 14
    mask_layers: List[int] = field(default_factory=lambda: [256, 256, 256, 256])
    loss_mask: Optional[Dict[str, Any]] = None


@dataclass
class RetinaHeadConfig:
    norm: Optional[str] = None  # the sub-heads' norm: null, or gn (GroupNorm(32), v2)
    fg_iou_thresh: float = 0.5
    bg_iou_thresh: float = 0.4
    prior_probability: float = 0.01
    topk_candidates: int = 1000
    score_thresh: float = 0.05
    nms_thresh: float = 0.5
    detections_per_img: int = 300
    sampler: Dict[str, Any] = _slot(type="all")
    loss_cls: Dict[str, Any] = _slot(type="sigmoid_focal", alpha=0.25, gamma=2.0)
    loss_bbox: Dict[str, Any] = _slot(type="l1")
    balancer: Optional[Dict[str, Any]] = None
    optimal_prior: bool = False  # sampling-free's bias from the training set's anchor counts
    adaptive_score_thresh: bool = False  # sampling-free's score_thresh = prior * num_classes


@dataclass
class FCOSHeadConfig:
    """FCOS's head and matching (torchvision's defaults): anchors are points, one per
    location (``model.anchors`` sizes = the level strides, aspect ratio 1)."""

    center_sampling_radius: float = 1.5
    prior_probability: float = 0.01
    num_convs: int = 4
    topk_candidates: int = 1000
    score_thresh: float = 0.2
    nms_thresh: float = 0.6
    detections_per_img: int = 100
    sampler: Dict[str, Any] = _slot(type="all")
    loss_cls: Dict[str, Any] = _slot(type="sigmoid_focal", alpha=0.25, gamma=2.0)
    loss_bbox: Dict[str, Any] = _slot(type="giou")
    balancer: Optional[Dict[str, Any]] = None


@dataclass
class SSDHeadConfig:
    """SSD / SSDlite as torchvision builds them (``variant``: ssd300_vgg16 or
    ssdlite320_mobilenet_v3_large: backbone, default boxes, input size and head are the
    variant's, so ``model.backbone``/``neck``/``anchors``/``transform`` are not used);
    ``trainable_layers`` null is torchvision's choice (VGG: 4 with weights, 5 without;
    SSDlite: all 6). Thresholds are SSD300's; the ssdlite arch sets its own."""

    variant: str = "ssd300_vgg16"
    trainable_layers: Optional[int] = None
    iou_thresh: float = 0.5
    score_thresh: float = 0.01
    nms_thresh: float = 0.45
    detections_per_img: int = 200
    topk_candidates: int = 400
    bbox_reg_weights: List[float] = field(default_factory=lambda: [10.0, 10.0, 5.0, 5.0])
    sampler: Dict[str, Any] = _slot(type="ohem", mode="ratio", neg_pos_ratio=3.0, normalize_by="positives")
    loss_cls: Dict[str, Any] = _slot(type="cross_entropy")
    loss_bbox: Dict[str, Any] = _slot(type="smooth_l1", beta=1.0)
    balancer: Optional[Dict[str, Any]] = None


@dataclass
class DenseHeadConfig:
    """The semantic segmentation head: every pixel a candidate for ``sampler`` and ``loss``
    (any softmax loss of ``detimb.losses``). ``rare_classes`` of asymmetric losses are
    category ids or names, as in the COCO file."""

    type: str = "dense"
    channels: int = 128
    sampler: Dict[str, Any] = _slot(type="all")
    loss: Dict[str, Any] = _slot(type="cross_entropy")


@dataclass
class ModelConfig:
    """``type``: faster_rcnn | retinanet | mask_rcnn | fcos | ssd | semantic_seg. ``arch``: a torchvision
    builder's name (fasterrcnn_resnet50_fpn, ...): its settings are merged under the config's
    own (``detimb/configs/_base_/arch/``). ``weights``: a local detector checkpoint
    (torchvision's state dict or detimb's); ``weights_strict``: refuse to re-initialise the
    class-dependent layers when the class count differs."""

    type: str = "faster_rcnn"
    arch: Optional[str] = None
    in_channels: int = 3  # input channels: 3 for RGB; as many as data.bands for multi-band scenes
    backbone: Dict[str, Any] = _slot(type="resnet50")
    neck: Dict[str, Any] = _slot(type="fpn", out_channels=256, extra_blocks="maxpool")
    transform: TransformConfig = field(default_factory=TransformConfig)
    anchors: AnchorConfig = field(default_factory=AnchorConfig)
    rpn: RPNConfig = field(default_factory=RPNConfig)
    roi_head: RoIHeadConfig = field(default_factory=RoIHeadConfig)
    retina_head: RetinaHeadConfig = field(default_factory=RetinaHeadConfig)
    fcos_head: FCOSHeadConfig = field(default_factory=FCOSHeadConfig)
    ssd_head: SSDHeadConfig = field(default_factory=SSDHeadConfig)
    head: DenseHeadConfig = field(default_factory=DenseHeadConfig)
    weights: Optional[str] = None
    weights_strict: bool = False
    # torchvision's pretrained architecture (FrozenBatchNorm, frozen early stages); null: when weights are given
    pretrained: Optional[bool] = None


@dataclass
class HardExampleConfig:
    """Hard example reintroduction (Small & Ventura), patch training only: every
    ``every_epochs`` epochs, re-score ``subset`` (a fraction) of the last epoch's patches;
    those whose mean true-class probability (over the pixels of the patch's centre class) is
    below ``confidence`` open the next epoch, hardest first, up to ``max_fraction`` of it."""

    enabled: bool = False
    confidence: float = 0.75
    every_epochs: int = 1
    subset: float = 1.0
    max_fraction: float = 0.5


@dataclass
class CopyPasteConfig:
    """Class-aware copy-paste (Ghiasi et al. 2021, as mmdetection's ``CopyPaste``;
    ``detimb.data.copy_paste``), detection training only: each item gets
    ``randint(0, max_pasted)`` training instances drawn by their class's repeat factor
    (``repeat_threshold``, ``sqrt``), pasted as masks (boxes without a segmentation); an
    object stays if its box moved at most ``bboxes_occluded_thr`` px or more than
    ``mask_occluded_thr`` px of it remain visible."""

    enabled: bool = False  # paste training instances onto each training item (detection only)
    max_pasted: int = 100  # instances per item drawn as randint(0, max_pasted); 100 is mmdetection's, for 1024 px
    repeat_threshold: float = 0.001  # LVIS repeat factor threshold t of the class-aware draw (0.001: uniform)
    sqrt: bool = True  # repeat factor max(1, (t / f_c)^0.5); false: t / f_c
    bboxes_occluded_thr: float = 10.0  # an object stays if its box moved at most this many pixels...
    mask_occluded_thr: int = 300  # ...or more than this many of its pixels stay visible


@dataclass
class SplitConfig:
    """One COCO split. ``out_of_bounds``: clip (and count) or error for boxes outside the image.
    ``transforms``: albumentations ops, e.g. ``[{type: HorizontalFlip, p: 0.5}]``.
    ``sampler`` (training split only): which images an epoch visits, ``{type: uniform}``,
    ``{type: repeat_factor, threshold: 0.001, sqrt: true}`` or ``{type: class_aware}``.
    Segmentation, training split: ``patch_sampler`` ``{type: random|class_balanced,
    patch_size, majority_cap, patches_per_epoch}`` trains on patches instead of images;
    ``hard_examples`` reintroduces hard patches; ``asymmetric_augmentation``
    ``{background_p, classes}`` applies ``transforms`` less often to background-only items."""

    ann_file: str = MISSING
    img_dir: str = MISSING
    keep_empty: bool = True
    out_of_bounds: str = "clip"
    transforms: List[Dict[str, Any]] = field(default_factory=list)
    sampler: Dict[str, Any] = _slot(type="uniform")
    patch_sampler: Optional[Dict[str, Any]] = None
    hard_examples: HardExampleConfig = field(default_factory=HardExampleConfig)
    asymmetric_augmentation: Optional[Dict[str, Any]] = None
    copy_paste: CopyPasteConfig = field(default_factory=CopyPasteConfig)


@dataclass
class DataConfig:
    """Segmentation: ``ignore_index`` labels unlabelled pixels; ``mask_overlap``
    (smaller_on_top | ignore) resolves overlapping instances (``detimb.data.class_map``);
    ``mixup`` ``{type: mixup|asymmetric, alpha, margin, rare_classes, p}`` blends training items."""

    train: SplitConfig = field(default_factory=SplitConfig)
    val: SplitConfig = field(default_factory=SplitConfig)
    ignore_index: int = 255
    mask_overlap: str = "smaller_on_top"
    mixup: Optional[Dict[str, Any]] = None
    batch_size: int = 2
    val_batch_size: int = 2
    num_workers: Any = "auto"  # loader processes, or auto: the rank's share of the cores (at most 8) on GPU, 0 on CPU
    prefetch_factor: int = 2  # batches each worker keeps in flight
    cache: Optional[str] = None  # keep decoded images for later epochs and runs: ram (/dev/shm), disk, or null
    cache_dir: Optional[str] = None  # data.cache: disk's folder (default: <detimb cache>/decoded)
    cache_max_gb: float = 32.0  # the most a dataset's decoded images may take in the cache
    check_images: bool = True  # read every image's header before training (cached; --skip-image-check)
    # multi-band / high-bit-depth input (read with rasterio, see detimb.data.pixels): 1-based bands
    # (null: all) and [lo, hi] scaling (null: integers by their type's maximum); model.in_channels
    bands: Optional[List[int]] = None
    scale: Optional[List[float]] = None


@dataclass
class OptimizerConfig:
    """``type``: sgd | adamw."""

    type: str = "sgd"
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])


@dataclass
class ScheduleConfig:
    """Linear warmup, then ``policy`` step (x gamma at each of ``steps``) or cosine to ``min_lr_factor``."""

    max_iters: int = 1000
    warmup_iters: int = 100
    warmup_factor: float = 0.001
    policy: str = "step"
    steps: List[int] = field(default_factory=list)
    gamma: float = 0.1
    min_lr_factor: float = 0.0


@dataclass
class TrainConfig:
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    grad_clip: Optional[float] = None
    amp: Any = False  # false, fp16 (true means fp16; CUDA only) or bf16 (CUDA or CPU)
    sync_bn: bool = False  # several GPUs: BatchNorm statistics over every rank's batch (SyncBatchNorm; CUDA)
    dist_timeout_minutes: float = 180.0  # how long a rank waits in a collective (rank 0 evaluates alone)
    seed: int = 0
    deterministic: bool = False
    log_interval: int = 20
    eval_interval: int = 500
    checkpoint_interval: int = 500
    keep_checkpoints: int = 2  # iter_N.pth files kept besides last.pth and best.pth
    best_metric: Optional[str] = None  # default: bbox_mAP for detectors, mDice_global for segmentation


@dataclass
class EvaluationConfig:
    """``frequency_thresholds`` [a, b]: a class in at most a training images is rare, at most b
    common, else frequent (LVIS uses 10 and 100). Segmentation: ``metrics`` (dice, iou) shown
    in the summary; ``regions`` name groups of classes (category ids or names) scored as one
    foreground, e.g. ``{whole: [1, 2, 4], core: [1, 4]}``."""

    enabled: bool = True  # false (detimb-train --no-eval): no evaluation during or after training, no best.pth
    frequency_thresholds: List[int] = field(default_factory=lambda: [10, 100])
    max_images: Optional[int] = None  # evaluate on this many validation images, evenly spaced (null: all)
    max_dets: int = 100
    ap_fixed_dets_per_class: int = 10000  # AP-fixed beside AP (Dave et al. 2021); 0: not computed
    ap_pool: bool = True  # AP-pool beside AP-fixed: classes ranked together, the same per-class cap
    backend: str = "pycocotools"  # or faster_coco_eval (pip install 'detimb[fast-eval]')
    metrics: List[str] = field(default_factory=lambda: ["dice", "iou"])
    regions: Dict[str, List[Any]] = field(default_factory=dict)


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    work_dir: Optional[str] = None
