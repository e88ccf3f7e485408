"""Class-aware copy-paste augmentation (Ghiasi et al., "Simple Copy-Paste is a Strong Data
Augmentation Method for Instance Segmentation", CVPR 2021).

There is no official release; the reference is mmdetection 3.3's ``CopyPaste``
(``mmdet/datasets/transforms/transforms.py``): up to ``max_num_pasted`` (100) objects are
pasted, their number drawn as ``randint(0, max_num_pasted)``; a destination object is kept
if its box moved at most ``bboxes_occluded_thr`` (10) px in every coordinate or more than
``mask_occluded_thr`` (300) px of it stay visible; the boxes of kept objects are recomputed
from their visible masks. Two differences, both detimb's:

- mmdetection draws the objects uniformly from one other image; detimb draws each pasted
  instance from the whole training set with probability proportional to its class's
  repeat factor ``r_c = max(1, (t / f_c)^0.5)`` (LVIS's, ``f_c`` the share of training images
  holding class c; ``repeat_threshold`` t, ``sqrt``), so rare classes are pasted more often:
  a class's expected share of the pasted instances is ``n_c r_c / sum_j n_j r_j`` (``n_c`` its
  training instances). With the default t = 0.001 every factor is 1 below a class in 0.1% of
  the images: a uniform draw over instances. Each source image is decoded once per item
  (through ``data.cache`` when it is on: a large ``max_pasted`` decodes many images).
- mmdetection keeps an object with nothing visible (an empty mask and a zero box); detimb
  removes it.

An instance is pasted as its mask where the annotation has a segmentation, and as its box
otherwise; it keeps its position in its source image, moved the least that keeps it inside
the destination (an instance larger than the destination is not pasted), so no pasted
instance leaves its image. Later pastes occlude earlier ones and the destination's objects:
every object whose visible mask lost pixels gets the box of what remains (objects nothing
covered keep their annotated boxes), and the occlusion rule above decides whether it stays.
Pasting is seeded per (seed, epoch, index), like the rest of the augmentation, so a resumed
run pastes exactly what an uninterrupted one would.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detimb.data.instance_masks import instance_mask, mask_box


@dataclass(frozen=True)
class PasteSource:
    """A training instance that can be pasted: its image's index in the dataset and its annotation."""

    image: int
    annotation: dict[str, Any]


@dataclass
class Pasted:
    """An item after pasting. image (H, W, C); boxes (N, 4) xyxy float32; labels (N,)
    int64; masks: N (H, W) uint8 visible masks; areas (N,) float32; pasted: how many
    pasted instances it holds; removed: destination objects the pastes hid."""

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    masks: list[np.ndarray]
    areas: np.ndarray
    pasted: int
    removed: int


@dataclass
class _Object:
    """An object during pasting: its visible mask (shrinks as later pastes cover it), its box
    and area before pasting, its label, and whether it was pasted."""

    mask: np.ndarray
    box: np.ndarray
    label: int
    area: float
    pasted: bool
    pixels: int = field(init=False)

    def __post_init__(self) -> None:
        self.pixels = int(self.mask.sum())

    def settled(self) -> _Settled | None:
        """Its box and area once every paste is done (those of what stays visible where a
        paste covered part of it, else its own), or None when nothing stays visible."""
        visible = int(self.mask.sum())
        if visible == 0:
            return None
        if visible < self.pixels:
            return _Settled(mask_box(self.mask), float(visible), visible)
        return _Settled(self.box, self.area, visible)


@dataclass(frozen=True)
class _Settled:
    """An object's final box (4,), area and visible pixels."""

    box: np.ndarray
    area: float
    visible: int


@dataclass(frozen=True)
class CopyPasteSettings:
    """``data.train.copy_paste`` (see the module docstring): mmdetection's max_pasted=100,
    bboxes_occluded_thr=10, mask_occluded_thr=300; the class-aware draw's
    repeat_threshold=0.001 and sqrt=True (LVIS's repeat factors)."""

    max_pasted: int = 100
    repeat_threshold: float = 0.001
    sqrt: bool = True
    bboxes_occluded_thr: float = 10.0
    mask_occluded_thr: int = 300

    def __post_init__(self) -> None:
        if self.max_pasted < 0 or self.repeat_threshold <= 0 or self.bboxes_occluded_thr < 0 \
                or self.mask_occluded_thr < 0:
            raise ValueError(f"copy-paste needs max_pasted >= 0, repeat_threshold > 0 and occlusion thresholds >= 0,"
                             f" got {self}")


class CopyPaste:
    """Copy-paste over ``images`` (a dataset's image records, by index) whose annotations
    ``annotations_of(image_id)`` gives (crowd ones are never pasted); ``label_of`` maps a
    category id to the model's label."""

    def __init__(self, images: list[dict[str, Any]], annotations_of: Callable[[int], list[dict[str, Any]]],
                 label_of: Callable[[int], int], settings: CopyPasteSettings) -> None:
        self.images, self.label_of, self.settings = images, label_of, settings
        self.sources = [PasteSource(i, a) for i, img in enumerate(images) for a in annotations_of(img["id"])
                        if not a.get("iscrowd", 0) and a["bbox"][2] >= 1 and a["bbox"][3] >= 1]
        holders = Counter(cat for cat, _ in {(s.annotation["category_id"], s.image) for s in self.sources})
        frequency = {c: holders[c] / max(1, len(images)) for c in holders}
        power = 0.5 if settings.sqrt else 1.0
        self.class_factors = {c: max(1.0, (settings.repeat_threshold / f) ** power) for c, f in frequency.items()}
        weights = np.array([self.class_factors[s.annotation["category_id"]] for s in self.sources], dtype=np.float64)
        self.weights = weights / weights.sum() if len(weights) else weights

    def draw(self, rng: np.random.Generator, own_image: int) -> list[PasteSource]:
        """The instances to paste onto image ``own_image``: ``randint(0, max_pasted)`` draws by
        repeat factor, with replacement, less those of the image itself."""
        if self.settings.max_pasted == 0 or not self.sources:
            return []
        count = int(rng.integers(0, self.settings.max_pasted))
        picks = rng.choice(len(self.sources), size=count, p=self.weights) if count else []
        return [self.sources[i] for i in picks if self.sources[i].image != own_image]

    def apply(self, image: np.ndarray, boxes: np.ndarray, labels: np.ndarray, masks: list[np.ndarray],
              areas: np.ndarray, sources: list[PasteSource], load: Callable[[dict[str, Any]], np.ndarray]) -> Pasted:
        """Paste ``sources`` onto an item (its ``masks``: one (H, W) per box, the box's
        rectangle where it has no segmentation), reading their images with ``load``."""
        out = np.array(image, copy=True)  # a cached decoded image is shared: never write into it
        objects = [_Object(m.astype(bool), np.asarray(b, dtype=np.float32), int(c), float(a), pasted=False)
                   for m, b, c, a in zip(masks, boxes, labels, areas)]
        decoded: dict[int, np.ndarray] = {}
        for source in sources:
            info = self.images[source.image]
            if source.image not in decoded:
                decoded[source.image] = load(info)
            placed = self._place(out, decoded[source.image], source.annotation, objects)
            if placed is not None:
                objects.append(_Object(placed, mask_box(placed), self.label_of(source.annotation["category_id"]),
                                       float(placed.sum()), pasted=True))
        settled = [(o, o.settled()) for o in objects]
        kept = [(o, end) for o, end in settled if end is not None and self._stays(o, end)]
        return Pasted(out, np.array([end.box for _, end in kept], dtype=np.float32).reshape(-1, 4),
                      np.array([o.label for o, _ in kept], dtype=np.int64), [o.mask.astype(np.uint8) for o, _ in kept],
                      np.array([end.area for _, end in kept], dtype=np.float32), sum(o.pasted for o, _ in kept),
                      sum(not o.pasted for o in objects) - sum(not o.pasted for o, _ in kept))

    def _place(self, out: np.ndarray, source_image: np.ndarray, ann: dict[str, Any],
               objects: list[_Object]) -> np.ndarray | None:
        """Paste one instance into ``out``, hiding what it covers of ``objects``; its full
        (H, W) mask, or None when it is larger than ``out`` or has no pixels."""
        x, y, w, h = ann["bbox"]
        sh, sw = source_image.shape[:2]
        x0, y0 = max(0, math.floor(x)), max(0, math.floor(y))
        x1, y1 = min(sw, math.ceil(x + w)), min(sh, math.ceil(y + h))
        patch = instance_mask(ann, sh, sw)[y0:y1, x0:x1].astype(bool)
        height, width = out.shape[:2]
        if not patch.any() or patch.shape[0] > height or patch.shape[1] > width:
            return None
        dy, dx = min(y0, height - patch.shape[0]), min(x0, width - patch.shape[1])
        window = (slice(dy, dy + patch.shape[0]), slice(dx, dx + patch.shape[1]))
        out[window][patch] = source_image[y0:y1, x0:x1][patch]
        for o in objects:
            o.mask[window] &= ~patch
        full = np.zeros((height, width), dtype=bool)
        full[window] = patch
        return full

    def _stays(self, o: _Object, end: _Settled) -> bool:
        """mmdetection's rule (box moved at most ``bboxes_occluded_thr`` in every coordinate,
        or more than ``mask_occluded_thr`` pixels visible) for an object with something visible."""
        moved = float(np.abs(end.box - o.box).max())
        return moved <= self.settings.bboxes_occluded_thr or end.visible > self.settings.mask_occluded_thr
