"""Setting a detector's post-hoc score calibration from its config (``model.roi_head.calibration``).

Used where a model is built with the training set's statistics (training) and where a
checkpoint is restored (evaluation, inference), so both score alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig
from torch import nn
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN

from detimb.config import to_dict
from detimb.errors import ConfigError
from detimb.losses import ClassStatistics
from detimb.models.heads import DetimbRoIHeads
from detimb.models.heads.calibration import CALIBRATIONS

WHERE = "model.roi_head.calibration"


def apply_calibration(model: nn.Module, spec: Mapping[str, Any] | None, class_stats: ClassStatistics | None,
                      model_type: str) -> None:
    """Give the RoI head the calibration ``spec`` (``model.roi_head.calibration``; None:
    none) with ``class_stats``, the training set's per-class counts it divides by."""
    if spec is None:
        return
    if not isinstance(model, GeneralizedRCNN) or not isinstance(model.roi_heads, DetimbRoIHeads):
        raise ConfigError(f"{WHERE} calibrates the RoI head of faster_rcnn or mask_rcnn; model.type is"
                          f" {model_type!r}. Fix: remove it")
    if class_stats is None:
        raise ConfigError(f"{WHERE} needs the training set's class counts, and none are known here. Fix: give the"
                          " config whose data.train.ann_file is the training annotations")
    model.roi_heads.calibrate(CALIBRATIONS.build(spec, WHERE, class_stats=class_stats))


def configured_calibration(model_cfg: DictConfig) -> dict[str, Any] | None:
    """``model.roi_head.calibration`` as a plain dict, or None."""
    spec = model_cfg.roi_head.calibration
    return None if spec is None else to_dict(spec)
