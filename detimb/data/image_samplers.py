"""Which training images each epoch visits: uniform, repeat-factor (LVIS) or class-aware.

An image sampler turns (epoch, seed) into the epoch's list of dataset indices, the same on
every rank; ``EpochSampler`` pads that list to a multiple of the world size and gives each
rank a disjoint, equally long share, so distributed training stays in step. Lists depend
only on (seed, epoch), so a resumed run visits exactly the images an uninterrupted one
would. The sampler yields ``EpochIndex`` (epoch, index) pairs: a dataset seeds an item's
augmentation from them, which stays right in data-loader workers that persist across
epochs (they never see a ``set_epoch`` made in the training process).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Iterator, NamedTuple

import torch
from torch.utils.data import Sampler

from detimb.registry import Registry

IMAGE_SAMPLERS = Registry("image sampler")


class EpochIndex(NamedTuple):
    """Item ``index`` of a dataset as read in ``epoch`` (what seeds its augmentation)."""

    epoch: int
    index: int


def image_classes(records: Any, images: list[dict[str, Any]]) -> list[set[int]]:
    """The set of (non-crowd) category ids in each image."""
    return [{a["category_id"] for a in records.annotations_by_image[img["id"]] if not a.get("iscrowd", 0)}
            for img in images]


class ImageSampler:
    """``epoch_indices(epoch, seed) -> list[int]`` over the ``classes`` (one set per image)."""

    def __init__(self, classes: list[set[int]]) -> None:
        self.classes = classes

    def epoch_indices(self, epoch: int, seed: int) -> list[int]:
        raise NotImplementedError

    @staticmethod
    def generator(epoch: int, seed: int) -> torch.Generator:
        return torch.Generator().manual_seed(seed + epoch)  # as torch's DistributedSampler seeds


class SequentialImages(ImageSampler):
    """Every image once, in order (evaluation)."""

    def epoch_indices(self, epoch: int, seed: int) -> list[int]:
        return list(range(len(self.classes)))


@IMAGE_SAMPLERS.register("uniform")
class UniformImages(ImageSampler):
    """Every image once per epoch, shuffled (torch's DistributedSampler order)."""

    def epoch_indices(self, epoch: int, seed: int) -> list[int]:
        return torch.randperm(len(self.classes), generator=self.generator(epoch, seed)).tolist()


def repeat_factors(classes: list[set[int]], threshold: float, sqrt: bool = True) -> list[float]:
    """LVIS repeat factors: with f_c the fraction of images containing class c,
    ``r_c = max(1, sqrt(t / f_c))`` (``t / f_c`` without sqrt); an image's factor is the
    largest of its classes', 1 for an image without annotations."""
    n = len(classes)
    counts = Counter(c for cls in classes for c in cls)
    r_class = {c: max(1.0, (threshold / (k / n)) ** (0.5 if sqrt else 1.0)) for c, k in counts.items()}
    return [max((r_class[c] for c in cls), default=1.0) for cls in classes]


@IMAGE_SAMPLERS.register("repeat_factor")
class RepeatFactorImages(ImageSampler):
    """Repeat-factor sampling (Gupta et al., LVIS, CVPR 2019): each epoch, image i appears
    floor(r_i) times, plus once more with probability r_i - floor(r_i) (stochastic
    rounding), then the list is shuffled. The epoch length varies around sum(r_i).
    Defaults: threshold=0.001, sqrt=True."""

    def __init__(self, classes: list[set[int]], threshold: float = 0.001, sqrt: bool = True) -> None:
        super().__init__(classes)
        if threshold <= 0:
            raise ValueError(f"repeat_factor threshold must be > 0, got {threshold}")
        self.factors = torch.tensor(repeat_factors(classes, threshold, sqrt), dtype=torch.float64)

    def epoch_indices(self, epoch: int, seed: int) -> list[int]:
        g = self.generator(epoch, seed)
        whole = self.factors.floor()
        repeats = whole + (torch.rand(len(self.factors), generator=g, dtype=torch.float64) < self.factors - whole)
        indices = torch.repeat_interleave(torch.arange(len(self.factors)), repeats.long())
        return indices[torch.randperm(len(indices), generator=g)].tolist()


@IMAGE_SAMPLERS.register("class_aware")
class ClassAwareImages(ImageSampler):
    """Class-aware sampling (Shen et al., ECCV 2016; mmdetection's ClassAwareSampler): each
    draw picks a class uniformly, then an image containing it uniformly. An epoch has as
    many draws as there are images; images without annotations are never drawn."""

    def __init__(self, classes: list[set[int]]) -> None:
        super().__init__(classes)
        by_class: dict[int, list[int]] = {}
        for i, cls in enumerate(classes):
            for c in cls:
                by_class.setdefault(c, []).append(i)
        if not by_class:
            raise ValueError("class_aware sampling needs annotated images")
        self.class_ids = sorted(by_class)
        self.members = [torch.tensor(by_class[c]) for c in self.class_ids]

    def epoch_indices(self, epoch: int, seed: int) -> list[int]:
        g = self.generator(epoch, seed)
        n = len(self.classes)
        picks = torch.randint(len(self.class_ids), (n,), generator=g)
        offsets = torch.rand(n, generator=g, dtype=torch.float64)
        sizes = torch.tensor([len(m) for m in self.members])[picks]
        slots = (offsets * sizes).long()
        return [int(self.members[c][s]) for c, s in zip(picks.tolist(), slots.tolist())]


class EpochSampler(Sampler[EpochIndex]):
    """This rank's share of the epoch's indices, from ``start`` on (for resuming), each
    paired with the epoch."""

    def __init__(self, policy: ImageSampler, rank: int, world: int, seed: int) -> None:
        self.policy, self.rank, self.world, self.seed = policy, rank, world, seed
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_start(self, start: int) -> None:
        self.start = start

    def rank_indices(self, epoch: int) -> list[int]:
        indices = self.policy.epoch_indices(epoch, self.seed)
        total = math.ceil(len(indices) / self.world) * self.world
        indices = (indices * math.ceil(total / max(1, len(indices))))[:total] if indices else []
        return indices[self.rank:total:self.world]

    def batches_in_epoch(self, epoch: int, batch_size: int) -> int:
        return math.ceil(len(self.rank_indices(epoch)) / batch_size)

    def __iter__(self) -> Iterator[EpochIndex]:
        epoch = self.epoch
        return (EpochIndex(epoch, i) for i in self.rank_indices(epoch)[self.start:])

    def __len__(self) -> int:
        return max(0, len(self.rank_indices(self.epoch)) - self.start)
