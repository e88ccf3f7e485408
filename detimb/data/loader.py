"""Datasets and data loaders from ``cfg.data``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from detimb.data.pixels import RGB, PixelSpec
from detimb.data.coco import CocoDetection, collate
from detimb.data.copy_paste import CopyPasteSettings
from detimb.data.dense_augment import MIXUPS, AsymmetricAugmentation
from detimb.data.image_cache import DecodedImageCache
from detimb.data.image_check import check_images
from detimb.data.image_samplers import IMAGE_SAMPLERS, EpochSampler, ImageSampler, SequentialImages, image_classes
from detimb.data.patch_samplers import PATCH_SAMPLERS
from detimb.data.segmentation import SegmentationDataset, image_pixel_counts
from detimb.data.transforms import build_albumentations
from detimb.errors import ConfigError, DatasetError
from detimb.utils import usable_cores


def build_datasets(cfg: DictConfig, with_masks: bool, seed: int, pixels: PixelSpec = RGB,
                   val_images: int | None = None) -> tuple[CocoDetection, CocoDetection]:
    """Train and val splits; val uses the training set's label map; both read ``pixels``,
    through the decoded-image cache ``data.cache`` (its bound checked first), and give
    8-bit RGB items as uint8 tensors (the model divides them by 255 on its device).
    ``val_images``: evaluate on at most this many validation images (``evaluation.max_images``)."""
    cache = DecodedImageCache.from_config(cfg, pixels)
    paste = cfg.train.copy_paste
    copy_paste = CopyPasteSettings(paste.max_pasted, paste.repeat_threshold, paste.sqrt, paste.bboxes_occluded_thr,
                                   paste.mask_occluded_thr) if paste.enabled else None
    train = CocoDetection(cfg.train.ann_file, cfg.train.img_dir, list(cfg.train.transforms), cfg.train.keep_empty,
                          cfg.train.out_of_bounds, with_masks, seed=seed, pixels=pixels, cache=cache, uint8_images=True,
                          copy_paste=copy_paste)
    val = CocoDetection(cfg.val.ann_file, cfg.val.img_dir, list(cfg.val.transforms), True, cfg.val.out_of_bounds,
                        with_masks, label_map=train.label_map, seed=seed, pixels=pixels, cache=cache,
                        uint8_images=True, max_images=val_images)
    _check_cache(cache, [train, val], "training and validation")
    if len(train) == 0:
        raise DatasetError(f"{cfg.train.ann_file}: no training images (keep_empty: {cfg.train.keep_empty}). Fix: add"
                           " annotated images or set data.train.keep_empty: true")
    if cfg.check_images:
        check_images(train.records, cfg.train.img_dir)
        check_images(val.records, cfg.val.img_dir)
    return train, val


def _check_cache(cache: DecodedImageCache | None, datasets: list[CocoDetection], splits: str) -> None:
    """The decoded-image cache's bound against the datasets' images (nothing without a cache)."""
    if cache is None:
        return
    sizes = [(ds.img_dir / im["file_name"], int(im["height"]), int(im["width"])) for ds in datasets
             for im in ds.images]
    cache.check_capacity(sizes, f"the {len(sizes)} {splits} images")


def _with_labels(spec: dict[str, Any], key: str, dataset: CocoDetection, where: str) -> dict[str, Any]:
    if spec.get(key) is None:
        return spec
    return {**spec, key: dataset.label_map.labels_of(spec[key], f"{where}.{key}")}


def build_segmentation_datasets(cfg: DictConfig, seed: int, progress: bool = False, val_images: int | None = None
                                ) -> tuple[SegmentationDataset, SegmentationDataset]:
    """Train and val class-map datasets; patches, mixup and asymmetric augmentation on train."""
    if cfg.train.copy_paste.enabled:
        raise ConfigError("data.train.copy_paste pastes instances for detection; semantic segmentation trains on"
                          " class maps. Fix: set data.train.copy_paste.enabled: false (mixup blends items instead)")
    detection_train, detection_val = build_datasets(cfg, False, seed, val_images=val_images)
    tcfg = cfg.train
    patch_sampler = None
    if tcfg.patch_sampler is not None:
        if tcfg.sampler.get("type", "uniform") != "uniform":
            raise ConfigError("data.train.sampler: patch training draws its own patches (data.train.patch_sampler);"
                              " image samplers apply to whole-image training. Fix: drop one of the two")
        counts = image_pixel_counts(detection_train, cfg.ignore_index, cfg.mask_overlap, progress)
        patch_sampler = PATCH_SAMPLERS.build(dict(tcfg.patch_sampler), "data.train.patch_sampler",
                                             pixel_counts=counts)
    elif tcfg.hard_examples.enabled:
        raise ConfigError("data.train.hard_examples needs patch training; set data.train.patch_sampler"
                          " (e.g. {type: class_balanced, patch_size: 64})")
    mixup = None
    if cfg.mixup is not None:
        mixup = MIXUPS.build(_with_labels(dict(cfg.mixup), "rare_classes", detection_train, "data.mixup"), "data.mixup")
    asymmetric = None
    if tcfg.asymmetric_augmentation is not None:
        spec = _with_labels(dict(tcfg.asymmetric_augmentation), "classes", detection_train,
                            "data.train.asymmetric_augmentation")
        spec.pop("type", None)
        asymmetric = AsymmetricAugmentation(**spec)
    common = {"ignore_index": cfg.ignore_index, "overlap": cfg.mask_overlap, "seed": seed}
    train = SegmentationDataset(detection_train, build_albumentations(list(tcfg.transforms)),
                                patch_sampler=patch_sampler, mixup=mixup, asymmetric_augmentation=asymmetric, **common)
    val = SegmentationDataset(detection_val, build_albumentations(list(cfg.val.transforms), "data.val.transforms"),
                              **common)
    return train, val


def build_val_dataset(cfg: DictConfig, label_map: Any, segmentation: bool, pixels: PixelSpec = RGB,
                      max_images: int | None = None) -> CocoDetection | SegmentationDataset:
    """The val split alone, labelled with a checkpoint's ``label_map`` and read as its
    ``pixels`` (bands and scaling), through ``data.cache`` (for evaluation)."""
    cache = DecodedImageCache.from_config(cfg, pixels)
    val = CocoDetection(cfg.val.ann_file, cfg.val.img_dir, list(cfg.val.transforms), True, cfg.val.out_of_bounds,
                        label_map=label_map, pixels=pixels, cache=cache, uint8_images=True, max_images=max_images)
    _check_cache(cache, [val], "validation")
    if not segmentation:
        return val
    return SegmentationDataset(val, build_albumentations(list(cfg.val.transforms), "data.val.transforms"),
                               ignore_index=cfg.ignore_index, overlap=cfg.mask_overlap)


def evaluation_subset_note(val: CocoDetection | SegmentationDataset) -> str | None:
    """What to say when the validation split is evaluated on a subset (``evaluation.max_images``)."""
    total = len(val.records.images)
    if len(val.images) == total:
        return None
    return (f"evaluating on {len(val.images)} of {total} validation images, evenly spaced (evaluation.max_images):"
            " the figures are the subset's")


AUTO_WORKERS_CAP = 8


CPU_SHARE_VARIABLE = "DETIMB_CPUS"  # the cores a process may use, set by whoever runs several side by side


def resolve_num_workers(setting: int | str, device: torch.device, local_world: int = 1) -> int:
    """``data.num_workers``: an integer as given; ``auto`` is this rank's share of the cores
    (``local_world`` ranks on the node), capped at 8, when the model steps on an
    accelerator, and 0 when it steps on the CPU: there the step's own threads use every core,
    and worker processes compete with it (``benchmarks/loader.py`` records the measurement).
    The cores are the process's (``DETIMB_CPUS`` when set: a sweep running several trainings
    at once gives each its share, where each would otherwise take every core of the machine)."""
    if setting != "auto":
        return int(setting)
    if device.type == "cpu":
        return 0
    cores = usable_cores()
    share = os.environ.get(CPU_SHARE_VARIABLE, "")
    if share.isdigit() and int(share) > 0:
        cores = min(cores, int(share))
    return max(1, min(AUTO_WORKERS_CAP, cores // max(1, local_world)))


@dataclass(frozen=True)
class LoaderSettings:
    """How a loader reads: ``num_workers`` processes (0: in the training process), each
    keeping ``prefetch_factor`` batches in flight; ``pin_memory`` for a CUDA device."""

    num_workers: int = 0
    prefetch_factor: int = 2
    pin_memory: bool = False

    @classmethod
    def from_config(cls, data: DictConfig, device: torch.device) -> LoaderSettings:
        """``data.num_workers`` (resolved for ``device`` and the ranks on this node) and
        ``data.prefetch_factor``; pinned memory on CUDA."""
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        return cls(resolve_num_workers(data.num_workers, device, local_world), int(data.prefetch_factor),
                   device.type == "cuda")


def build_loader(dataset: CocoDetection | SegmentationDataset, *, batch_size: int,
                 settings: LoaderSettings = LoaderSettings(), rank: int = 0, world: int = 1, seed: int = 0,
                 sampler: dict[str, Any] | None = None, where: str = "data.train.sampler",
                 persistent: bool = True) -> DataLoader:
    """A loader over this rank's share of each epoch. ``sampler``: an image sampler spec
    (uniform, repeat_factor, class_aware); None visits every item once, in order. A patch
    dataset is always read in order: its items are random draws already, and hard
    examples must come first.

    With ``settings.num_workers`` > 0 the workers persist across epochs (unless
    ``persistent`` is False: a dataset whose state changes between epochs, as hard example
    reintroduction's does, needs fresh ones) and keep ``prefetch_factor`` batches each in
    flight; pinned memory (CUDA) lets the host-to-device copy overlap the step."""
    policy: ImageSampler
    if isinstance(dataset, SegmentationDataset) and dataset.patch_sampler is not None:
        policy = SequentialImages([set()] * len(dataset))
    else:
        classes = image_classes(dataset.records, dataset.images)
        policy = SequentialImages(classes) if sampler is None else IMAGE_SAMPLERS.build(sampler, where, classes=classes)
    # A generator of its own: each new iterator otherwise draws its worker seed from the
    # global RNG that the detector's samplers use, and a resumed run would drift from an
    # uninterrupted one. Augmentation is seeded per (seed, epoch, index), not per worker.
    generator = torch.Generator().manual_seed(seed + rank)
    workers: dict[str, Any] = {}
    if settings.num_workers > 0:
        workers = {"persistent_workers": persistent, "prefetch_factor": settings.prefetch_factor}
    return DataLoader(dataset, batch_size=batch_size, sampler=EpochSampler(policy, rank, world, seed),
                      num_workers=settings.num_workers, collate_fn=collate, generator=generator,
                      pin_memory=settings.pin_memory, **workers)


def position(loader: DataLoader, iteration: int) -> tuple[int, int]:
    """(epoch, batches into it) of a training ``iteration``; epochs may differ in length."""
    sampler = loader.sampler
    assert isinstance(sampler, EpochSampler)
    epoch = 0
    while iteration >= (n := sampler.batches_in_epoch(epoch, loader.batch_size)) and n > 0:
        iteration -= n
        epoch += 1
    return epoch, iteration
