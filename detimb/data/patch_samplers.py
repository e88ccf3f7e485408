"""Where training patches are centred: uniformly, or class-balanced (Small & Ventura).

A patch sampler decides, per draw, which image and which class the patch's centre pixel
has; the dataset then picks the centre uniformly among that image's pixels of the class
and crops ``patch_size`` around it. Draws take a numpy ``Generator`` seeded by the caller
per (seed, epoch, index), so an epoch's patches depend on nothing else.
"""

from __future__ import annotations

import numpy as np

from detimb.registry import Registry

PATCH_SAMPLERS = Registry("patch sampler")


class PatchSampler:
    """Base: ``pixel_counts`` (num_images, C) labelled pixels of each class (0 background)
    per image; ``patch_size`` int or [h, w]; ``patches_per_epoch`` (default: one per image).
    ``draw(rng) -> (image index, class)``; class -1 means any labelled pixel."""

    def __init__(self, pixel_counts: np.ndarray, patch_size: int | list[int] = 64,
                 patches_per_epoch: int | None = None) -> None:
        counts = np.asarray(pixel_counts, dtype=np.float64)
        if counts.ndim != 2 or counts.shape[0] == 0 or counts.sum() == 0:
            raise ValueError("a patch sampler needs at least one image with labelled pixels")
        size = [int(patch_size)] * 2 if np.isscalar(patch_size) else [int(s) for s in patch_size]  # type: ignore[union-attr]
        if len(size) != 2 or min(size) <= 0:
            raise ValueError(f"patch_size must be a positive int or [h, w], got {patch_size}")
        if patches_per_epoch is not None and patches_per_epoch <= 0:
            raise ValueError(f"patches_per_epoch must be > 0, got {patches_per_epoch}")
        self.counts = counts
        self.patch_size = (size[0], size[1])
        self.patches_per_epoch = int(patches_per_epoch or counts.shape[0])

    def class_probabilities(self) -> np.ndarray | None:
        """Probability of each class for the centre pixel, or None for 'any pixel'."""
        return None

    def draw(self, rng: np.random.Generator) -> tuple[int, int]:
        probs = self.class_probabilities()
        if probs is None:
            per_image = self.counts.sum(1)
            return int(rng.choice(len(per_image), p=per_image / per_image.sum())), -1
        cls = int(rng.choice(len(probs), p=probs))
        column = self.counts[:, cls]
        return int(rng.choice(len(column), p=column / column.sum())), cls


@PATCH_SAMPLERS.register("random")
class RandomPatches(PatchSampler):
    """Patch centres uniform over every labelled pixel of the training set, so classes
    appear in proportion to their area: the baseline. Defaults: patch_size=64,
    patches_per_epoch = number of images."""


@PATCH_SAMPLERS.register("class_balanced")
class ClassBalancedPatches(PatchSampler):
    """Class-balanced patch sampling (Small & Ventura, BraTS): the centre pixel's class is
    drawn so every class present in the training set has an equal share, except the
    majority class (most pixels, usually background), whose share is capped at
    ``majority_cap`` (20% in the paper; the cap applies when it is below the equal share).
    The remaining share is split equally among the other classes. Then an image is drawn
    in proportion to its pixels of that class. Defaults: patch_size=64, majority_cap=0.2,
    patches_per_epoch = number of images."""

    def __init__(self, pixel_counts: np.ndarray, patch_size: int | list[int] = 64,
                 patches_per_epoch: int | None = None, majority_cap: float = 0.2) -> None:
        super().__init__(pixel_counts, patch_size, patches_per_epoch)
        if not 0.0 < majority_cap <= 1.0:
            raise ValueError(f"majority_cap must be in (0, 1], got {majority_cap}")
        self.majority_cap = majority_cap

    def class_probabilities(self) -> np.ndarray:
        totals = self.counts.sum(0)
        present = totals > 0
        probs = np.zeros(len(totals))
        n = int(present.sum())
        if n == 1:
            probs[present] = 1.0
            return probs
        majority = int(np.argmax(totals))
        share = min(self.majority_cap, 1.0 / n)
        probs[present] = (1.0 - share) / (n - 1)
        probs[majority] = share
        return probs
