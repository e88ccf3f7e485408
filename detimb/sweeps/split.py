"""The validation images split once into a selection half and a confirmation half.

Seeded, disjoint, and stratified by class: classes are taken rarest first (fewest images),
and each of a class's images not yet placed goes to the half that holds fewer images of
that class (ties: the smaller half, then a seeded coin), so every class with two or more
validation images is in both halves. Images without annotations are dealt to the smaller
half. A class with a single validation image can be in one half only: it is named.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Split:
    """Image ids of each half, and the classes (names) found in one half only."""

    selection: tuple[int, ...]
    confirmation: tuple[int, ...]
    one_half_only: tuple[str, ...]


def split_images(coco: dict[str, Any], seed: int) -> Split:
    rng = np.random.default_rng(seed)
    ids = [im["id"] for im in coco["images"]]
    order = {image_id: rank for rank, image_id in enumerate(rng.permutation(ids).tolist())}
    classes_of: dict[int, set[int]] = {i: set() for i in ids}
    for a in coco["annotations"]:
        if not a.get("iscrowd", 0) and a["image_id"] in classes_of:
            classes_of[a["image_id"]].add(a["category_id"])
    images_of: dict[int, list[int]] = {}
    for image_id in sorted(ids, key=order.__getitem__):
        for c in classes_of[image_id]:
            images_of.setdefault(c, []).append(image_id)
    halves: tuple[list[int], list[int]] = ([], [])
    index = {c: k for k, c in enumerate(sorted(images_of))}
    held = np.zeros((2, len(index)), dtype=np.int64)
    placed: set[int] = set()

    def place(image_id: int, half: int) -> None:
        halves[half].append(image_id)
        placed.add(image_id)
        for c in classes_of[image_id]:
            held[half, index[c]] += 1

    for c in sorted(images_of, key=lambda c: (len(images_of[c]), c)):
        for image_id in images_of[c]:
            if image_id in placed:
                continue
            a, b = held[0, index[c]], held[1, index[c]]
            if a != b:
                place(image_id, 0 if a < b else 1)
            elif len(halves[0]) != len(halves[1]):
                place(image_id, 0 if len(halves[0]) < len(halves[1]) else 1)
            else:
                place(image_id, int(rng.integers(2)))
    for image_id in sorted((i for i in ids if i not in placed), key=order.__getitem__):
        place(image_id, 0 if len(halves[0]) <= len(halves[1]) else 1)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    lonely = tuple(names.get(c, str(c)) for c in sorted(index) if min(held[0, index[c]], held[1, index[c]]) == 0)
    return Split(tuple(sorted(halves[0])), tuple(sorted(halves[1])), lonely)
