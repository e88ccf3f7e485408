"""The one path from a checkpoint to a model ready to predict.

``Predictor``, ``evaluate``, ``tools/infer.py`` and ``tools/export.py`` all restore through
``restore``: the config (the one stored in the checkpoint, or one given, which must read
pixels as the model was trained to), the label map, the model built and its weights
loaded exactly (``detimb.models.weights``), the stored priors applied (sampling-free's
adaptive score threshold), eval mode, on the device.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from detimb.config import config_from_yaml, load_config, to_dict
from detimb.data.coco_validate import read_coco_json
from detimb.data.label_map import LabelMap
from detimb.data.pixels import PixelSpec
from detimb.distributed import resolve_device
from detimb.errors import CheckpointError, ConfigError
from detimb.losses import ClassStatistics
from detimb.models.builder import build_model, is_segmentation, without_weight_files
from detimb.models.calibrate import apply_calibration, configured_calibration
from detimb.models.priors import apply_priors
from detimb.models.weights import load_checkpoint, load_model_state


@dataclass(frozen=True)
class RestoredModel:
    """A checkpoint's model in eval mode on ``device``, with what reading and naming its
    predictions needs: the resolved ``config``, the classes, the input ``pixels``."""

    model: nn.Module
    config: DictConfig
    label_map: LabelMap
    pixels: PixelSpec
    device: torch.device
    source: Path

    @property
    def segmentation(self) -> bool:
        return is_segmentation(self.config.model)


def _config(state: dict[str, Any], checkpoint: Path, config: str | Path | None, overrides: list[str]) -> DictConfig:
    """The given config checked against the stored one's input pixels, or the stored one."""
    stored = config_from_yaml(state["config"], f"{checkpoint} (its stored config)", overrides) \
        if isinstance(state.get("config"), str) else None
    if config is None:
        if stored is None:
            raise CheckpointError(f"{checkpoint}: holds no config. Fix: give the config it was trained with")
        return stored
    cfg = load_config(config, overrides)
    if stored is not None and PixelSpec.from_config(stored) != PixelSpec.from_config(cfg):
        raise ConfigError(f"{checkpoint} was trained on input {PixelSpec.from_config(stored)} but {config} states"
                          f" {PixelSpec.from_config(cfg)}. Fix: give the config the model was trained with (its run"
                          " folder's config.yaml)")
    if stored is not None and not is_segmentation(stored.model) and stored.model.roi_head.calibration is not None \
            and to_dict(stored.model.roi_head.calibration) != to_dict(cfg.model.roi_head.calibration):
        raise ConfigError(f"{checkpoint} was calibrated ({to_dict(stored.model.roi_head.calibration)}) but {config}"
                          f" states model.roi_head.calibration: {to_dict(cfg.model.roi_head.calibration)}, which would"
                          " score it otherwise without a word. Fix: drop the config (the checkpoint's own has its"
                          " calibration), or state the same calibration (null to switch it off on purpose)")
    return cfg


def training_statistics(state: dict[str, Any], checkpoint: Path, cfg: DictConfig, label_map: LabelMap
                        ) -> ClassStatistics:
    """The training set's per-class counts: stored in the checkpoint, or (checkpoints
    written before they were stored, torchvision-layout ones) counted from the config's
    training annotations."""
    if isinstance(state.get("class_statistics"), dict):
        return ClassStatistics.from_dict(state["class_statistics"])
    path = Path(cfg.data.train.ann_file)
    if not path.is_file():
        raise ConfigError(f"{checkpoint} stores no class counts, and the config's training annotations"
                          f" (data.train.ann_file: {path}) are not there to count them. Fix: give the config whose"
                          " data.train.ann_file is the training set the model learnt from")
    return ClassStatistics.from_coco(read_coco_json(path), label_map.coco_ids)


def stored_config(checkpoint: str | Path, overrides: list[str] | None = None) -> DictConfig:
    """The config a detimb checkpoint stores, with ``overrides`` on top (named errors for a
    file that is not a checkpoint or holds no config)."""
    source = Path(checkpoint)
    return _config(load_checkpoint(source), source, None, list(overrides or []))


def restore(checkpoint: str | Path, *, config: str | Path | None = None, overrides: list[str] | None = None,
            device: str | torch.device | None = None) -> RestoredModel:
    """The model of a detimb checkpoint, ready to predict. ``config``: a config file or
    packaged name to build it from (default: the config stored in the checkpoint);
    ``overrides``: ``key=value`` items on top; ``device``: default CUDA when available."""
    source = Path(checkpoint)
    state = load_checkpoint(source)
    cfg = _config(state, source, config, list(overrides or []))
    label_map = LabelMap.from_dict(state["label_map"])
    model = build_model(without_weight_files(cfg).model, label_map, ignore_index=cfg.data.ignore_index)
    load_model_state(model, state, to_dict(cfg.model), label_map.num_classes, source)
    apply_priors(model, cfg, dict(state.get("priors", {})), set_bias=False)
    if not is_segmentation(cfg.model) and cfg.model.roi_head.calibration is not None:
        apply_calibration(model, configured_calibration(cfg.model), training_statistics(state, source, cfg, label_map),
                          cfg.model.type)
    target = resolve_device(device)
    return RestoredModel(model.to(target).eval(), cfg, label_map, PixelSpec.from_config(cfg), target, source)
