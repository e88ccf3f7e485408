"""Datasets and data loaders from ``cfg.data``."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from detimb.data.coco import CocoDetection, collate
from detimb.errors import DatasetError
from detimb.data.image_samplers import IMAGE_SAMPLERS, EpochSampler, SequentialImages, image_classes


def build_datasets(cfg: DictConfig, with_masks: bool, seed: int) -> tuple[CocoDetection, CocoDetection]:
    """Train and val splits; val uses the training set's label map."""
    train = CocoDetection(cfg.train.ann_file, cfg.train.img_dir, list(cfg.train.transforms), cfg.train.keep_empty,
                          cfg.train.out_of_bounds, with_masks, seed=seed)
    val = CocoDetection(cfg.val.ann_file, cfg.val.img_dir, list(cfg.val.transforms), True, cfg.val.out_of_bounds,
                        with_masks, label_map=train.label_map, seed=seed)
    if len(train) == 0:
        raise DatasetError(f"{cfg.train.ann_file}: no training images (keep_empty: {cfg.train.keep_empty}). Fix: add"
                           " annotated images or set data.train.keep_empty: true")
    return train, val


def build_loader(dataset: CocoDetection, batch_size: int, num_workers: int, rank: int, world: int, seed: int,
                 sampler: dict[str, Any] | None = None, where: str = "data.train.sampler") -> DataLoader:
    """A loader over this rank's share of each epoch. ``sampler``: an image sampler spec
    (uniform, repeat_factor, class_aware); None visits every image once, in order."""
    classes = image_classes(dataset.records, dataset.images)
    policy = SequentialImages(classes) if sampler is None else IMAGE_SAMPLERS.build(sampler, where, classes=classes)
    # A generator of its own: each new iterator otherwise draws its worker seed from the
    # global RNG that the detector's samplers use, and a resumed run would drift from an
    # uninterrupted one. Augmentation is seeded per (seed, epoch, index), not per worker.
    generator = torch.Generator().manual_seed(seed + rank)
    return DataLoader(dataset, batch_size=batch_size, sampler=EpochSampler(policy, rank, world, seed),
                      num_workers=num_workers, collate_fn=collate, persistent_workers=False, generator=generator)


def position(loader: DataLoader, iteration: int) -> tuple[int, int]:
    """(epoch, batches into it) of a training ``iteration``; epochs may differ in length."""
    sampler = loader.sampler
    assert isinstance(sampler, EpochSampler)
    epoch = 0
    while iteration >= (n := sampler.batches_in_epoch(epoch, loader.batch_size)) and n > 0:
        iteration -= n
        epoch += 1
    return epoch, iteration
