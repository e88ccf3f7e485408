"""A COCO split as class maps for semantic segmentation, whole images or sampled patches.

Items are ``(image, target)``: ``image`` float32 (3, H, W) in [0, 1]; ``target``:
``mask`` (H, W) int64 (0 background, 1..K classes, ``ignore_index`` unlabelled),
``image_id``, and with mixup ``mask_b`` (H, W) and ``mix`` (H, W) float32, the weight of
``mask`` at each pixel. In patch mode item ``i`` of an epoch is a patch whose centre is
drawn with a generator seeded by (seed, epoch, i); ``target['patch']`` records
(image index, centre y, centre x, class) so hard examples can be found again.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from detimb.data.pixels import to_chw_tensor
from detimb.data.class_map import class_map
from detimb.data.coco import CocoDetection
from detimb.data.image_samplers import EpochIndex
from detimb.data.dense_augment import AsymmetricAugmentation, Mixup
from detimb.data.patch_samplers import PatchSampler
from detimb.data.transforms import apply_albumentations

Spec = tuple[int, int, int, int]  # image index, centre y, centre x, centre class
PARTNER_EPOCH = 1_000_003  # mixup partners draw from epoch + this: their own, independent stream


def image_pixel_counts(source: CocoDetection, ignore_index: int = 255, overlap: str = "smaller_on_top",
                       progress: bool = False) -> np.ndarray:
    """(num_images, K + 1) labelled pixels of each class in each image of ``source``."""
    k = source.label_map.num_classes
    counts = np.zeros((len(source.images), k), dtype=np.int64)
    for i, info in enumerate(tqdm(source.images, desc="class maps", disable=not progress, leave=False)):
        cmap = class_map(source.records.annotations_by_image[info["id"]], info["height"], info["width"],
                         source.label_map, ignore_index, overlap)
        counts[i] = np.bincount(cmap[cmap != ignore_index].ravel(), minlength=k)[:k]
    return counts


def crop(image: np.ndarray, cmap: np.ndarray, cy: int, cx: int, size: tuple[int, int],
         ignore_index: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``size`` window centred on (cy, cx); outside the image: black pixels, ignored labels."""
    ph, pw = size
    y0, x0 = cy - ph // 2, cx - pw // 2
    out_img = np.zeros((ph, pw, image.shape[2]), dtype=image.dtype)
    out_map = np.full((ph, pw), ignore_index, dtype=cmap.dtype)
    h, w = cmap.shape
    sy0, sx0, sy1, sx1 = max(0, y0), max(0, x0), min(h, y0 + ph), min(w, x0 + pw)
    if sy1 > sy0 and sx1 > sx0:
        out_img[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[sy0:sy1, sx0:sx1]
        out_map[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = cmap[sy0:sy1, sx0:sx1]
    return out_img, out_map


class SegmentationDataset(Dataset):
    """Class maps over a validated COCO split (``source``, whose transforms are ignored).

    Args:
        source: the split (images, annotations, label map, image loading).
        transforms: an albumentations ``Compose`` or None (see ``detimb.data.transforms``).
        ignore_index: label of unlabelled pixels (default 255).
        overlap: how overlapping instances are resolved (``detimb.data.class_map``).
        patch_sampler: sample patches instead of whole images (training).
        mixup: blend each item with a second one (training).
        asymmetric_augmentation: apply ``transforms`` to background-only items with a lower probability.
        seed: base of every per-item generator.
    """

    def __init__(self, source: CocoDetection, transforms: Any = None, ignore_index: int = 255,
                 overlap: str = "smaller_on_top", patch_sampler: PatchSampler | None = None,
                 mixup: Mixup | None = None, asymmetric_augmentation: AsymmetricAugmentation | None = None,
                 seed: int = 0) -> None:
        self.source = source
        self.pipeline = transforms
        self.ignore_index, self.overlap = ignore_index, overlap
        self.patch_sampler, self.mixup, self.asymmetric = patch_sampler, mixup, asymmetric_augmentation
        self.seed = seed
        self.epoch = 0
        self.hard: dict[int, list[Spec]] = {}  # epoch -> patches that go first in it

    # the parts of the detection dataset the engine reads
    @property
    def records(self) -> Any:
        return self.source.records

    @property
    def images(self) -> list[dict[str, Any]]:
        return self.source.images

    @property
    def label_map(self) -> Any:
        return self.source.label_map

    @property
    def coco(self) -> Any:
        return self.source.coco

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.patch_sampler.patches_per_epoch if self.patch_sampler else len(self.images)

    # -- hard example reintroduction ------------------------------------------------------
    def set_hard(self, epoch: int, specs: list[Spec]) -> None:
        """Patches that open ``epoch`` (at most the epoch's length), in the order given."""
        self.hard = {e: s for e, s in self.hard.items() if e >= epoch - 1}
        self.hard[epoch] = [tuple(int(v) for v in s) for s in specs][:len(self)]  # type: ignore[misc]

    def state_dict(self) -> dict[str, Any]:
        return {"hard": {int(e): [list(s) for s in specs] for e, specs in self.hard.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.hard = {int(e): [tuple(s) for s in specs] for e, specs in state.get("hard", {}).items()}

    # -- items ----------------------------------------------------------------------------
    def _rng(self, epoch: int, index: int, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, epoch, index, stream])

    def load(self, image_index: int) -> tuple[np.ndarray, np.ndarray]:
        """The image (H, W, 3) uint8 and its class map (H, W) int64."""
        info = self.images[image_index]
        image = self.source.load_image(info)
        cmap = class_map(self.records.annotations_by_image[info["id"]], info["height"], info["width"],
                         self.label_map, self.ignore_index, self.overlap)
        return image, cmap

    def spec(self, epoch: int, index: int, cmap: np.ndarray | None = None) -> Spec:
        """Which patch item ``index`` of ``epoch`` is (patch mode only)."""
        assert self.patch_sampler is not None, "spec() needs a patch sampler"
        hard = self.hard.get(epoch, [])
        if index < len(hard):
            return hard[index]
        rng = self._rng(epoch, index, 0)
        image_index, cls = self.patch_sampler.draw(rng)
        if cmap is None:
            cmap = self.load(image_index)[1]
        pool = np.flatnonzero(cmap != self.ignore_index if cls < 0 else cmap == cls)
        if pool.size == 0:  # augmentation-free maps always hold the drawn class; guard anyway
            pool = np.arange(cmap.size)
        centre = int(pool[rng.integers(pool.size)])
        return image_index, centre // cmap.shape[1], centre % cmap.shape[1], cls

    def raw_item(self, epoch: int, index: int) -> tuple[np.ndarray, np.ndarray, Spec | None]:
        """Image and class map before augmentation: the whole image, or the item's patch."""
        if self.patch_sampler is None:
            image, cmap = self.load(index)
            return image, cmap, None
        spec = self.spec(epoch, index)
        image, cmap = self.load(spec[0])
        return (*crop(image, cmap, spec[1], spec[2], self.patch_sampler.patch_size, self.ignore_index), spec)

    def _augmented(self, epoch: int, index: int) -> tuple[np.ndarray, np.ndarray, Spec | None]:
        image, cmap, spec = self.raw_item(epoch, index)
        if self.pipeline is not None:
            apply = self.asymmetric is None or self.asymmetric.augment(cmap, self._rng(epoch, index, 1),
                                                                       self.ignore_index)
            if apply:
                seed = int(self._rng(epoch, index, 2).integers(2**31))
                image, _, _, maps = apply_albumentations(self.pipeline, image, np.zeros((0, 4), np.float32),
                                                         [cmap], seed, keep_masks=True)
                cmap = maps[0]
        return image, cmap, spec

    def __getitem__(self, key: int | EpochIndex) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        epoch, index = (self.epoch, key) if isinstance(key, int) else key
        image, cmap, spec = self._augmented(epoch, index)
        target: dict[str, torch.Tensor] = {}
        if self.mixup is not None:
            rng = self._rng(epoch, index, 3)
            if rng.random() < self.mixup.p:
                partner = int(rng.integers(len(self)))
                image_b, cmap_b, _ = self._augmented(epoch + PARTNER_EPOCH, partner)
                if image_b.shape != image.shape:
                    image_b, cmap_b = crop(image_b, cmap_b, image.shape[0] // 2, image.shape[1] // 2,
                                           image.shape[:2], self.ignore_index)
                image, cmap, cmap_b, mix = self.mixup(image, cmap, image_b, cmap_b, rng, self.ignore_index)
            else:
                cmap_b, mix = cmap, np.ones(cmap.shape, dtype=np.float32)
            target["mask_b"] = torch.from_numpy(np.ascontiguousarray(cmap_b, dtype=np.int64))
            target["mix"] = torch.from_numpy(np.ascontiguousarray(mix, dtype=np.float32))
        info = self.images[spec[0] if spec is not None else index]
        target["mask"] = torch.from_numpy(np.ascontiguousarray(cmap, dtype=np.int64))
        target["image_id"] = torch.tensor(info["id"], dtype=torch.int64)
        if spec is not None:
            target["patch"] = torch.tensor(spec, dtype=torch.int64)
        return to_chw_tensor(image, keep_uint8=self.source.uint8_images), target
