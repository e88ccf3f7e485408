"""Sampling-free's optimal bias initialisation and adaptive score threshold.

Chen et al., "Is Heuristic Sampling Necessary in Training Deep Object Detectors?" (TIP
2021), as the authors' code does it (``ChenJoya/sampling-free``,
``maskrcnn_benchmark/modeling/sampling_free.py``: ``optimal_bias_init``,
``adaptive_threshold``): before training, one pass over the training set counts the
anchors that the head's own matcher labels foreground (matched) and background (below
the low threshold); the prior is ``p = fg / (fg + bg) / K`` (K foreground classes; 1 for
the RPN's objectness) and the classifier bias is set to ``-log((1 - p) / p)``. At
inference RetinaNet keeps detections scoring above ``p * (K + 1)`` in place of its fixed
threshold (the released code multiplies by its NUM_CLASSES, which counts background).
The released code computes the prior for RetinaNet and for Faster R-CNN's RPN, not for
the RoI head's softmax classifier, and so does detimb.

Where the released code stops on an image without ground truth, detimb counts that
image's anchors as background, as its loss sees them. The prior is cached per
architecture and training set (``DETIMB_CACHE_DIR``, else ``$XDG_CACHE_HOME/detimb``,
else ``~/.cache/detimb``), so the pass runs once; the trainer stores the priors in its
checkpoints so evaluation applies the same threshold.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor, nn
from torchvision.models.detection._utils import Matcher
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import box_iou
from tqdm import tqdm

from detimb.config import to_dict
from detimb.errors import ConfigError
from detimb.models.heads import DetimbRetinaNet
from detimb.utils import atomic_write_json, cache_dir

PRIOR_HEADS = ("rpn", "retina_head")


@dataclass(frozen=True)
class AnchorCounts:
    foreground: int
    background: int

    def prior(self, num_classes: int) -> float:
        return self.foreground / max(1, self.foreground + self.background) / num_classes


def wanted_heads(cfg: DictConfig) -> list[str]:
    """The heads of ``cfg.model`` whose ``optimal_prior`` is on."""
    heads = ["rpn"] if cfg.model.type in ("faster_rcnn", "mask_rcnn") else (
        ["retina_head"] if cfg.model.type == "retinanet" else [])
    return [h for h in heads if cfg.model[h].optimal_prior]


def _cache_key(cfg: DictConfig, head: str) -> str:
    ann = Path(cfg.data.train.ann_file).resolve()
    stat = ann.stat()
    m = cfg.model
    parts = {"head": head, "type": m.type, "backbone": to_dict(m.backbone), "neck": to_dict(m.neck),
             "anchors": to_dict(m.anchors), "transform": to_dict(m.transform),
             "thresholds": [m[head].fg_iou_thresh, m[head].bg_iou_thresh],
             "data": [str(ann), stat.st_size, stat.st_mtime_ns, to_dict(cfg.data.train.transforms)]}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _anchor_parts(model: nn.Module, head: str) -> tuple[AnchorGenerator, Matcher]:
    if head == "rpn":
        return model.rpn.anchor_generator, model.rpn.proposal_matcher
    return model.anchor_generator, model.proposal_matcher


@torch.no_grad()
def count_anchors(model: nn.Module, head: str, dataset: Any, progress: bool = False) -> AnchorCounts:
    """Foreground and background anchors of ``head`` over ``dataset`` (items (image, target))."""
    generator, matcher = _anchor_parts(model, head)
    device = next(model.parameters()).device  # the data is read to the CPU; the model may be on a GPU
    was_training = model.training
    model.eval()
    feature_shapes: dict[tuple[int, ...], list[Tensor]] = {}
    fg = bg = 0
    try:
        for i in tqdm(range(len(dataset)), desc=f"optimal prior ({head})", disable=not progress):
            image, target = dataset[i]
            images, targets = model.transform([image.to(device)], [{k: v.to(device) for k, v in target.items()
                                                                    if k != "masks"}])
            shape = tuple(images.tensors.shape)
            if shape not in feature_shapes:  # the anchors depend only on the feature maps' sizes
                features = model.backbone(images.tensors)
                feature_shapes[shape] = [f.new_zeros(f.shape) for f in features.values()]
            anchors = generator(images, feature_shapes[shape])[0]
            gt = targets[0]["boxes"]
            if gt.numel() == 0:
                bg += len(anchors)
                continue
            matched = matcher(box_iou(gt, anchors))
            fg += int((matched >= 0).sum())
            bg += int((matched == matcher.BELOW_LOW_THRESHOLD).sum())
    finally:
        model.train(was_training)
    return AnchorCounts(fg, bg)


def optimal_priors(cfg: DictConfig, model: nn.Module, dataset: Any, num_classes: int,
                   progress: bool = False) -> dict[str, float]:
    """The prior of each head that asks for one, from the cache or one pass over ``dataset``."""
    path = cache_dir() / "optimal_priors.json"
    cache: dict[str, float] = json.loads(path.read_text()) if path.is_file() else {}
    priors: dict[str, float] = {}
    for head in wanted_heads(cfg):
        key = _cache_key(cfg, head)
        if key not in cache:
            k = 1 if head == "rpn" else num_classes - 1
            cache[key] = count_anchors(model, head, dataset, progress).prior(k)
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(path, cache, indent=1)
        priors[head] = cache[key]
    return priors


def apply_priors(model: nn.Module, cfg: DictConfig, priors: dict[str, float], *, set_bias: bool) -> None:
    """Set the classifier biases from ``priors`` (``set_bias``: before training; a
    checkpoint holds them afterwards) and RetinaNet's adaptive score threshold
    (``retina_head.adaptive_score_thresh``: from the optimal prior, or without one from
    ``prior_probability``)."""
    for head, p in priors.items():
        if not 0.0 < p < 1.0:
            raise ConfigError(f"model.{head}.optimal_prior: the training set gives prior {p}: no anchor is"
                              " foreground. Fix: check model.anchors.sizes against the objects' sizes")
        if set_bias:
            bias = model.rpn.head.cls_logits.bias if head == "rpn" else model.head.classification_head.cls_logits.bias
            with torch.no_grad():
                bias.fill_(-math.log((1 - p) / p))
    if cfg.model.type == "retinanet" and cfg.model.retina_head.adaptive_score_thresh:
        assert isinstance(model, DetimbRetinaNet)
        p = priors.get("retina_head", cfg.model.retina_head.prior_probability)
        model.score_thresh = p * model.head.classification_head.num_classes
