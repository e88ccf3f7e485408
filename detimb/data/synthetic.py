"""The built-in dataset: long-tailed shapes on cluttered backgrounds, written as COCO.

Deterministic from a seed and written in seconds, so tests and the demo need nothing
from outside. Each object is a filled polygon of one of up to eight shape classes in a
random colour, size and rotation; its COCO record carries the polygon (so segmentation
can use it), its box and its polygon area. Classes get the train instance counts given
(default 1000/400/150/60/25/10), and the rarer half of the classes is mostly placed in
images without the frequent half (``mix`` sets how often an image mixes the two), as in
real long-tailed data where rare objects seldom appear beside the head class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from detimb.errors import InputError
from detimb.utils import atomic_write_json, is_whole_number

# Silhouettes chosen to stay distinct at 16 px under any rotation (a hexagon does not:
# antialiased, it reads as a circle).
SHAPES = ("square", "circle", "triangle", "star", "cross", "crescent", "arrow", "tee")
DEFAULT_TRAIN_COUNTS = (1000, 400, 150, 60, 25, 10)
DEFAULT_VAL_COUNTS = (150, 80, 50, 40, 40, 40)


def check_counts_and_seed(train_counts: tuple[int, ...], val_counts: tuple[int, ...], seed: int) -> None:
    """What every built-in dataset's spec needs: whole instance counts >= 0 and a seed numpy's
    generators take (an integer >= 0)."""
    bad = [c for c in (*train_counts, *val_counts) if not is_whole_number(c, at_least=0)]
    if bad:
        raise InputError(f"instance counts must be integers >= 0 (--train-counts, --val-counts), got {bad[0]!r}")
    if not is_whole_number(seed, at_least=0):
        raise InputError(f"seed (--seed) must be an integer >= 0, got {seed!r}")


@dataclass(kw_only=True)
class ShapesSpec:
    """What to generate. Counts are instances per class, in the order of ``SHAPES``."""

    train_counts: tuple[int, ...] = DEFAULT_TRAIN_COUNTS
    val_counts: tuple[int, ...] = DEFAULT_VAL_COUNTS
    image_size: int = 128
    min_object: int = 16
    max_object: int = 40
    max_objects_per_image: int = 4
    mix: float = 0.05
    seed: int = 0
    categories: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        # InputError (a ValueError): the dataset tools report it as a user's error, not a traceback
        if len(self.train_counts) != len(self.val_counts):
            raise InputError("train_counts and val_counts (--train-counts, --val-counts) need one entry per class,"
                             f" got {len(self.train_counts)} and {len(self.val_counts)}")
        if not 1 <= len(self.train_counts) <= len(SHAPES):
            raise InputError(f"between 1 and {len(SHAPES)} classes are available: {', '.join(SHAPES)}")
        check_counts_and_seed(self.train_counts, self.val_counts, self.seed)
        if not 4 <= self.min_object <= self.max_object < self.image_size:
            raise InputError("need 4 <= min_object <= max_object < image_size")
        self.categories = SHAPES[: len(self.train_counts)]


def _unit_polygon(shape: str, rng: np.random.Generator) -> np.ndarray:
    """Vertices (K, 2) of a shape inscribed in the unit circle, centred at 0."""
    t = lambda n, phase=0.0: np.linspace(0, 2 * np.pi, n, endpoint=False) + phase  # noqa: E731
    ring = lambda a, r: np.stack([r * np.cos(a), r * np.sin(a)], 1)  # noqa: E731
    if shape == "square":
        return ring(t(4, np.pi / 4), 1.0)
    if shape == "circle":
        return ring(t(32), 1.0)
    if shape == "triangle":
        return ring(t(3, -np.pi / 2), 1.0)
    if shape == "tee":
        return np.array([[-0.8, -0.7], [0.8, -0.7], [0.8, -0.3], [0.2, -0.3], [0.2, 0.8], [-0.2, 0.8],
                         [-0.2, -0.3], [-0.8, -0.3]])
    if shape == "star":
        radii = np.tile([1.0, 0.42], 5)
        return ring(t(10, -np.pi / 2), radii)
    if shape == "cross":
        a, b = 1.0 / math.sqrt(2), 0.3
        return np.array([[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b], [b, a], [-b, a], [-b, b], [-a, b],
                         [-a, -b], [-b, -b]])
    if shape == "arrow":
        return np.array([[-0.9, -0.25], [0.2, -0.25], [0.2, -0.7], [0.95, 0.0], [0.2, 0.7], [0.2, 0.25],
                         [-0.9, 0.25]])
    if shape == "crescent":
        outer = np.linspace(np.pi / 2, 3 * np.pi / 2, 16)
        inner = np.linspace(3 * np.pi / 2, np.pi / 2, 16)
        return np.concatenate([ring(outer, 1.0), ring(inner, 1.0) * [0.45, 1.0]])
    raise ValueError(f"unknown shape {shape!r}")


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A noisy gradient with random lines and blobs: clutter that is not any class."""
    base = rng.uniform(40, 200, size=3)
    ramp = np.linspace(-1, 1, size)[None, :, None] * rng.uniform(-40, 40, size=3)
    img = np.clip(base + ramp + rng.normal(0, 12, (size, size, 3)), 0, 255).astype(np.uint8)
    img = np.ascontiguousarray(np.transpose(img, (1, 0, 2)) if rng.random() < 0.5 else img)
    for _ in range(rng.integers(2, 7)):
        p1, p2 = rng.integers(0, size, 2), rng.integers(0, size, 2)
        cv2.line(img, tuple(map(int, p1)), tuple(map(int, p2)), tuple(map(int, rng.integers(0, 255, 3))),
                 int(rng.integers(1, 3)), cv2.LINE_AA)
    for _ in range(rng.integers(0, 4)):
        centre = tuple(map(int, rng.integers(0, size, 2)))
        axes = tuple(map(int, rng.integers(2, 6, 2)))
        cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360,
                    tuple(map(int, rng.integers(0, 255, 3))), -1, cv2.LINE_AA)
    return img


def _group_images(counts: tuple[int, ...], spec: ShapesSpec, rng: np.random.Generator) -> list[list[int]]:
    """Class labels (0-based) of the objects of each image; rare and head classes seldom mix."""
    order = np.argsort(-np.asarray(counts), kind="stable")
    head = set(order[: max(1, len(counts) // 2)].tolist())
    pools: dict[bool, list[int]] = {True: [], False: []}
    for cls, n in enumerate(counts):
        pools[cls in head] += [cls] * n
    images: list[list[int]] = []
    for pool in pools.values():
        rng.shuffle(pool)
        i = 0
        while i < len(pool):
            k = int(rng.integers(1, spec.max_objects_per_image + 1))
            images.append(pool[i : i + k])
            i += k
    head_imgs = [im for im in images if im[0] in head]
    tail_imgs = [im for im in images if im[0] not in head]
    for im in tail_imgs:
        if head_imgs and rng.random() < spec.mix:
            other = head_imgs[int(rng.integers(len(head_imgs)))]
            im[-1], other[-1] = other[-1], im[-1]
    rng.shuffle(images)
    return images


def _place(labels: list[int], spec: ShapesSpec, rng: np.random.Generator) -> list[tuple[int, np.ndarray]]:
    """(label, polygon in pixels) for each object, placed with little overlap."""
    placed: list[tuple[int, np.ndarray, np.ndarray]] = []
    for label in labels:
        for _ in range(50):
            radius = rng.uniform(spec.min_object, spec.max_object) / 2
            centre = rng.uniform(radius, spec.image_size - radius, 2)
            box = np.concatenate([centre - radius, centre + radius])
            if all(_iou(box, b) < 0.05 for _, _, b in placed):
                break
        angle = rng.uniform(0, 2 * np.pi)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        poly = _unit_polygon(spec.categories[label], rng) @ rot.T * radius + centre
        placed.append((label, poly, box))
    return [(label, poly) for label, poly, _ in placed]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _visible_colour(img: np.ndarray, poly: np.ndarray, rng: np.random.Generator) -> tuple[int, ...]:
    """A random colour that differs from the mean background under the object by >= 120 (L1)."""
    x0, y0 = np.clip(poly.min(0).astype(int), 0, None)
    x1, y1 = poly.max(0).astype(int) + 1
    under = img[y0:y1, x0:x1].reshape(-1, 3).mean(0)
    colour = rng.integers(0, 256, 3)
    while np.abs(colour - under).sum() < 120:
        colour = rng.integers(0, 256, 3)
    return tuple(map(int, colour))


def _polygon_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return float(abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))) / 2)


def _write_split(out: Path, split: str, counts: tuple[int, ...], spec: ShapesSpec, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    img_dir = out / split
    img_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for image_id, labels in enumerate(_group_images(counts, spec, rng), start=1):
        img = _background(spec.image_size, rng)
        file_name = f"{image_id:06d}.png"
        for label, poly in _place(labels, spec, rng):
            colour = _visible_colour(img, poly, rng)
            cv2.fillPoly(img, [np.round(poly * 16).astype(np.int32)], colour, cv2.LINE_AA, shift=4)
            poly = np.clip(poly, 0, spec.image_size)
            x0, y0 = poly.min(0)
            x1, y1 = poly.max(0)
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": label + 1,
                "bbox": [round(float(x0), 2), round(float(y0), 2), round(float(x1 - x0), 2),
                         round(float(y1 - y0), 2)],
                "area": round(_polygon_area(poly), 2),
                "segmentation": [np.round(poly, 2).flatten().tolist()],
                "iscrowd": 0,
            })
        cv2.imwrite(str(img_dir / file_name), img)
        images.append({"id": image_id, "file_name": file_name, "width": spec.image_size,
                       "height": spec.image_size})
    coco = {
        "info": {"description": f"detimb synthetic shapes ({split}), seed {spec.seed}"},
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(spec.categories)],
    }
    atomic_write_json(out / "annotations" / f"{split}.json", coco)
    return coco


def make_shapes_dataset(out: str | Path, spec: ShapesSpec | None = None) -> dict[str, Path]:
    """Write ``out/{train,val}/*.png`` and ``out/annotations/{train,val}.json``; returns the json paths."""
    spec = spec or ShapesSpec()
    out = Path(out)
    paths = {}
    for offset, (split, counts) in enumerate((("train", spec.train_counts), ("val", spec.val_counts))):
        _write_split(out, split, counts, spec, seed=spec.seed * 2 + offset)
        paths[split] = out / "annotations" / f"{split}.json"
    return paths
