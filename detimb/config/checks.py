"""Ranges and choices of config values, checked when a config loads, before any data is read.

Each rule names its dotted key, what it accepts and why; a value outside it is a
``ConfigError`` naming the key, the value, the accepted range and the file layers that
may have set it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from detimb.data.pixels import PixelSpec, PixelSpecError
from detimb.errors import ConfigError
from detimb.registry import closest
from detimb.utils import is_whole_number

COCO_STATS = ("mAP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl", "mAP_macro",
              "APr", "APc", "APf")
SEGMENTATION_METRICS = ("mDice", "mIoU", "mDice_global", "mIoU_global", "Dicer", "Dicec", "Dicef", "Dicer_global",
                        "Dicec_global", "Dicef_global")


AMP_MODES = ("fp16", "bf16")


@dataclass(frozen=True)
class Rule:
    key: str
    accepts: str
    ok: Callable[[Any], bool]


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _positive(v: Any) -> bool:
    return _finite(v) and v > 0


def _at_least(n: int) -> Callable[[Any], bool]:
    return lambda v: is_whole_number(v, at_least=n)


def _choice(*names: str) -> Callable[[Any], bool]:
    return lambda v: v in names


RULES = (
    Rule("train.optimizer.lr", "a finite number > 0", _positive),
    Rule("train.optimizer.type", "sgd or adamw", _choice("sgd", "adamw")),
    Rule("train.optimizer.weight_decay", "a finite number >= 0", lambda v: _finite(v) and v >= 0),
    Rule("train.optimizer.momentum", "a number in [0, 1)", lambda v: _finite(v) and 0 <= v < 1),
    Rule("train.schedule.max_iters", "an integer >= 1", _at_least(1)),
    Rule("train.schedule.warmup_iters", "an integer >= 0", _at_least(0)),
    Rule("train.schedule.steps", "increasing iteration numbers >= 1 (the learning-rate drops)",
         lambda v: all(_at_least(1)(x) for x in v) and all(a < b for a, b in zip(v, v[1:]))),
    Rule("train.schedule.warmup_factor", "a number in (0, 1]", lambda v: _finite(v) and 0 < v <= 1),
    Rule("train.schedule.policy", "step or cosine", _choice("step", "cosine")),
    Rule("train.schedule.gamma", "a number in (0, 1]", lambda v: _finite(v) and 0 < v <= 1),
    Rule("train.schedule.min_lr_factor", "a number in [0, 1]", lambda v: _finite(v) and 0 <= v <= 1),
    Rule("train.amp", "false, fp16 (true means fp16) or bf16", lambda v: v is False or v is True or v in AMP_MODES),
    Rule("train.dist_timeout_minutes", "a number of minutes > 0", _positive),
    Rule("train.grad_clip", "a number > 0, or null for no clipping", lambda v: v is None or _positive(v)),
    Rule("train.log_interval", "an integer >= 1", _at_least(1)),
    Rule("train.eval_interval", "an integer >= 1", _at_least(1)),
    Rule("train.checkpoint_interval", "an integer >= 1", _at_least(1)),
    Rule("train.keep_checkpoints", "an integer >= 1", _at_least(1)),
    Rule("train.seed", "an integer >= 0 (numpy's generators take no negative seed)", _at_least(0)),
    # a missing key (a model without the transform) selects None
    Rule("model.transform.min_size", "an integer >= 1 (pixels)", lambda v: v is None or _at_least(1)(v)),
    Rule("model.transform.max_size", "an integer >= 1 (pixels)", lambda v: v is None or _at_least(1)(v)),
    Rule("data.batch_size", "an integer >= 1", _at_least(1)),
    Rule("data.val_batch_size", "an integer >= 1", _at_least(1)),
    Rule("data.num_workers", "auto or an integer >= 0", lambda v: v == "auto" or _at_least(0)(v)),
    Rule("data.prefetch_factor", "an integer >= 1", _at_least(1)),
    Rule("data.train.copy_paste.max_pasted", "an integer >= 0", _at_least(0)),
    Rule("data.train.copy_paste.repeat_threshold", "a number in (0, 1]", lambda v: _finite(v) and 0 < v <= 1),
    Rule("data.train.copy_paste.bboxes_occluded_thr", "a number of pixels >= 0", lambda v: _finite(v) and v >= 0),
    Rule("data.train.copy_paste.mask_occluded_thr", "an integer number of pixels >= 0", _at_least(0)),
    Rule("data.val.copy_paste.enabled", "false: copy-paste augments training only", lambda v: v is False),
    Rule("data.cache", "ram, disk or null", lambda v: v is None or v in ("ram", "disk")),
    Rule("data.cache_max_gb", "a number of GB > 0", _positive),
    Rule("data.train.out_of_bounds", "clip or error", _choice("clip", "error")),
    Rule("data.val.out_of_bounds", "clip or error", _choice("clip", "error")),
    Rule("data.mask_overlap", "smaller_on_top or ignore", _choice("smaller_on_top", "ignore")),
    Rule("data.ignore_index", "an integer in 0..255", lambda v: isinstance(v, int) and 0 <= v <= 255),
    Rule("evaluation.max_dets", "an integer >= 1", _at_least(1)),
    Rule("evaluation.max_images", "an integer >= 1, or null for every validation image",
         lambda v: v is None or _at_least(1)(v)),
    Rule("evaluation.ap_fixed_dets_per_class", "an integer >= 0 (0: no AP-fixed)", _at_least(0)),
    Rule("evaluation.backend", "pycocotools or faster_coco_eval", _choice("pycocotools", "faster_coco_eval")),
    Rule("evaluation.frequency_thresholds", "two integers a <= b",
         lambda v: len(v) == 2 and all(isinstance(x, int) for x in v) and v[0] <= v[1]),
)


def _fraction(v: Any) -> bool:
    return _finite(v) and 0 <= v <= 1


# The heads' thresholds: a value outside them trains with no positives, or evaluates nothing.
HEAD_RULES = tuple(
    Rule(f"model.{head}.{key}", accepts, ok)
    for head, keys in (("rpn", ("fg_iou_thresh", "bg_iou_thresh", "nms_thresh", "score_thresh")),
                       ("roi_head", ("fg_iou_thresh", "bg_iou_thresh", "nms_thresh", "score_thresh",
                                     "detections_per_img")),
                       ("retina_head", ("fg_iou_thresh", "bg_iou_thresh", "nms_thresh", "score_thresh",
                                        "detections_per_img")),
                       ("fcos_head", ("nms_thresh", "score_thresh", "detections_per_img")),
                       ("ssd_head", ("iou_thresh", "nms_thresh", "score_thresh", "detections_per_img")))
    for key in keys
    for accepts, ok in [{"detections_per_img": ("an integer >= 1", _at_least(1)),
                         "score_thresh": ("a number in [0, 1): a score must be able to pass it",
                                          lambda v: _finite(v) and 0 <= v < 1)
                         }.get(key, ("a number in [0, 1] (an IoU)", _fraction))]
)
IOU_PAIRS = ("rpn", "roi_head", "retina_head")  # bg_iou_thresh <= fg_iou_thresh


def metric_names(cfg: DictConfig) -> list[str]:
    """The metrics ``train.best_metric`` may name for this config's task."""
    if cfg.model.type == "semantic_seg":
        return list(SEGMENTATION_METRICS)
    iou_types = ("bbox", "segm") if cfg.model.type == "mask_rcnn" else ("bbox",)
    return [f"{t}_{s}" for t in iou_types for s in COCO_STATS]


def _set_by(key: str, layers: list[tuple[str, dict[str, Any]]]) -> str:
    """The last layer that writes ``key`` (a dotted path), or the schema's default."""
    for source, data in reversed(layers):
        node: Any = data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
        else:
            return source
    return "the schema's default"


def check_values(cfg: DictConfig, layers: list[tuple[str, dict[str, Any]]]) -> None:
    """Raise a ConfigError for the first value outside its rule (``layers``: (source, data) as merged)."""
    for rule in (*RULES, *HEAD_RULES):
        value = OmegaConf.select(cfg, rule.key)
        value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        if not rule.ok(value):
            raise ConfigError(f"{_set_by(rule.key, layers)}: {rule.key} is {value!r}; it must be {rule.accepts}")
    for head in IOU_PAIRS:
        fg, bg = cfg.model[head].fg_iou_thresh, cfg.model[head].bg_iou_thresh
        if bg > fg:
            raise ConfigError(f"{_set_by(f'model.{head}.bg_iou_thresh', layers)}: model.{head}.bg_iou_thresh ({bg})"
                              f" is above fg_iou_thresh ({fg}); a candidate below bg is background and one at or"
                              " above fg foreground, so bg must be <= fg")
    channels = cfg.model.in_channels
    for key in ("image_mean", "image_std"):
        values = list(cfg.model.transform[key])
        if len(values) != channels:
            raise ConfigError(f"{_set_by(f'model.transform.{key}', layers)}: model.transform.{key} has {len(values)}"
                              f" values but model.in_channels is {channels}; give one per input channel")
    try:
        PixelSpec.from_config(cfg)
    except PixelSpecError as err:
        raise ConfigError(f"{_set_by(err.key, layers)}: {err}") from err
    if channels != 3 and cfg.model.type == "ssd":
        raise ConfigError(f"{_set_by('model.in_channels', layers)}: SSD's backbones are torchvision's RGB ones;"
                          " model.in_channels must be 3 with model.type ssd")
    best = cfg.train.best_metric
    if best is not None:
        names = metric_names(cfg)
        per_class = cfg.model.type == "semantic_seg" and str(best).startswith(("dice/", "iou/", "region_dice/"))
        if best not in names and not per_class:
            setter = _set_by("train.best_metric", layers)
            raise ConfigError(f"{setter}: train.best_metric '{best}' is not a metric of a {cfg.model.type} run"
                              f"{closest(str(best), names)}; choose from {', '.join(names)}"
                              + (", dice/<class>, iou/<class>, region_dice/<region>" if cfg.model.type ==
                                 "semantic_seg" else ""))
