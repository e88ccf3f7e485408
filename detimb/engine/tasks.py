"""What differs between training a detector and a segmentation model: data, class
statistics, evaluation and the between-epoch work. The trainer owns the loop."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict
from typing import Any

from omegaconf import DictConfig
from torch import nn

from detimb.data.label_map import LabelMap
from detimb.data.loader import build_datasets, build_segmentation_datasets
from detimb.data.pixels import PixelSpec
from detimb.engine.hard_examples import HardExampleMiner
from detimb.evaluation.evaluators import Evaluator, make_evaluator
from detimb.losses.statistics import ClassStatistics
from detimb.models.builder import build_model, is_segmentation, uses_masks


class Task(ABC):
    """One kind of model to train; ``evaluator`` scores it."""

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.evaluator: Evaluator = make_evaluator(cfg)

    @abstractmethod
    def build_datasets(self, seed: int, progress: bool = False) -> tuple[Any, Any]:
        """(training set, validation set)."""

    @abstractmethod
    def class_statistics(self, train_set: Any, label_map: LabelMap, train_freq: dict[int, dict[str, int]]
                         ) -> ClassStatistics:
        """What class-aware losses count per class."""

    @property
    def has_unused_parameters(self) -> bool:
        """Whether some parameters get no gradient in a step (DDP must look for them)."""
        return False

    def build_model(self, label_map: LabelMap, stats: ClassStatistics | None) -> nn.Module:
        return build_model(self.cfg.model, label_map, stats, ignore_index=self.cfg.data.ignore_index)

    def hard_examples(self, train_set: Any, rank: int, world: int) -> HardExampleMiner | None:
        """The between-epoch hard example reintroduction over ``train_set``, if configured."""
        return None


class DetectionTask(Task):
    """Faster R-CNN, RetinaNet, FCOS, SSD, Mask R-CNN: COCO boxes (and masks)."""

    def build_datasets(self, seed: int, progress: bool = False) -> tuple[Any, Any]:
        return build_datasets(self.cfg.data, uses_masks(self.cfg.model), seed, PixelSpec.from_config(self.cfg),
                              val_images=self.cfg.evaluation.max_images)

    def class_statistics(self, train_set: Any, label_map: LabelMap, train_freq: dict[int, dict[str, int]]
                         ) -> ClassStatistics:
        """Training instances and images per class."""
        return ClassStatistics.from_coco(train_set.records.data, label_map.coco_ids)

    @property
    def has_unused_parameters(self) -> bool:
        return uses_masks(self.cfg.model)  # a batch without masks leaves the mask head out


class SegmentationTask(Task):
    """Semantic segmentation from COCO masks: class maps, patches, Dice/IoU scoring."""

    def build_datasets(self, seed: int, progress: bool = False) -> tuple[Any, Any]:
        return build_segmentation_datasets(self.cfg.data, seed, progress, val_images=self.cfg.evaluation.max_images)

    def class_statistics(self, train_set: Any, label_map: LabelMap, train_freq: dict[int, dict[str, int]]
                         ) -> ClassStatistics:
        """Training pixels per class (annotation areas) as instances, and images per class."""
        area: dict[int, float] = defaultdict(float)
        for a in train_set.records.data["annotations"]:
            if not a.get("iscrowd", 0):
                area[a["category_id"]] += float(a.get("area", a["bbox"][2] * a["bbox"][3]))
        return ClassStatistics(tuple(round(area[cid]) for cid in label_map.coco_ids),
                               tuple(train_freq[cid]["images"] for cid in label_map.coco_ids),
                               len(train_set.records.data["images"]))

    def hard_examples(self, train_set: Any, rank: int, world: int) -> HardExampleMiner | None:
        hard = self.cfg.data.train.hard_examples
        if not hard.enabled:
            return None
        return HardExampleMiner(hard, train_set, self.cfg.data.val_batch_size, rank, world, self.cfg.train.seed)


def make_task(cfg: DictConfig) -> Task:
    return SegmentationTask(cfg) if is_segmentation(cfg.model) else DetectionTask(cfg)
