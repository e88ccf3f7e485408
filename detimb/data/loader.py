"""Datasets and data loaders from ``cfg.data``; a distributed sampler that resumes mid-epoch."""

from __future__ import annotations

import math
from typing import Iterator

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, DistributedSampler

from detimb.data.coco import CocoDetection, collate


class ResumableDistributedSampler(DistributedSampler):
    """torch's DistributedSampler (seeded shuffle per epoch, disjoint equal shares per rank)
    that can start ``start`` samples into this rank's share, so a resumed run sees exactly
    the samples an uninterrupted run would."""

    def __init__(self, dataset: CocoDetection, num_replicas: int, rank: int, shuffle: bool, seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.start = 0

    def set_start(self, start: int) -> None:
        self.start = start

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.start:])

    def __len__(self) -> int:
        return self.num_samples - self.start


def build_datasets(cfg: DictConfig, with_masks: bool, seed: int) -> tuple[CocoDetection, CocoDetection]:
    """Train and val splits; val uses the training set's label map and no augmentation."""
    train = CocoDetection(cfg.train.ann_file, cfg.train.img_dir, list(cfg.train.transforms), cfg.train.keep_empty,
                          cfg.train.out_of_bounds, with_masks, seed=seed)
    val = CocoDetection(cfg.val.ann_file, cfg.val.img_dir, list(cfg.val.transforms), True, cfg.val.out_of_bounds,
                        with_masks, label_map=train.label_map, seed=seed)
    return train, val


def build_loader(dataset: CocoDetection, batch_size: int, num_workers: int, rank: int, world: int, shuffle: bool,
                 seed: int) -> DataLoader:
    sampler = ResumableDistributedSampler(dataset, world, rank, shuffle, seed)
    # A generator of its own: each new iterator otherwise draws its worker seed from the
    # global RNG that the detector's samplers use, and a resumed run would drift from an
    # uninterrupted one. Augmentation is seeded per (seed, epoch, index), not per worker.
    generator = torch.Generator().manual_seed(seed + rank)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, collate_fn=collate,
                      persistent_workers=False, generator=generator)


def iters_per_epoch(loader: DataLoader) -> int:
    sampler = loader.sampler
    assert isinstance(sampler, ResumableDistributedSampler)
    return math.ceil(sampler.num_samples / loader.batch_size)
