"""Albumentations pipelines from config, aware of boxes and masks.

A config lists ops by their albumentations class name::

    transforms: [{type: HorizontalFlip, p: 0.5}, {type: RandomBrightnessContrast, p: 0.2}]

Boxes travel in pascal_voc (x0, y0, x1, y1) pixels; boxes an op pushes out of the image
are dropped together with their labels and masks. Each call is seeded by the caller so
that a run resumed from a checkpoint augments exactly as an uninterrupted one.
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import numpy as np  # noqa: E402

from detimb.errors import ConfigError  # noqa: E402
from detimb.registry import closest  # noqa: E402


def build_albumentations(specs: list[dict[str, Any]], where: str = "data.train.transforms") -> A.Compose | None:
    """An ``A.Compose`` for the listed ops, or None when the list is empty."""
    if not specs:
        return None
    ops = []
    available = [n for n in dir(A) if isinstance(getattr(A, n), type) and issubclass(getattr(A, n), A.BasicTransform)]
    for i, spec in enumerate(specs):
        spec = dict(spec)
        name = spec.pop("type", None)
        if name not in available:
            raise ConfigError(f"{where}[{i}]: unknown albumentations transform {name!r}{closest(str(name), available)}")
        try:
            ops.append(getattr(A, name)(**spec))
        except Exception as err:  # albumentations validates arguments with pydantic
            raise ConfigError(f"{where}[{i}]: cannot build {name}: {err}") from err
    return A.Compose(
        ops,
        bbox_params=A.BboxParams(format="pascal_voc", label_fields=["indices"], min_visibility=0.0, clip=True),
    )


def apply_albumentations(
    pipeline: A.Compose, image: np.ndarray, boxes: np.ndarray, masks: list[np.ndarray] | None, seed: int,
    keep_masks: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray] | None]:
    """Returns (image, boxes, kept indices into the input boxes, masks of the kept boxes);
    ``keep_masks``: masks are not one per box (a class map) and all come back."""
    pipeline.set_random_seed(seed)
    kwargs: dict[str, Any] = {"image": image, "bboxes": boxes, "indices": np.arange(len(boxes))}
    if masks is not None:
        kwargs["masks"] = masks
    out = pipeline(**kwargs)
    kept = np.asarray(out["indices"], dtype=np.int64)
    new_boxes = np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)
    new_masks = None
    if masks is not None:
        new_masks = list(out["masks"]) if keep_masks else [out["masks"][k] for k in kept]
    return out["image"], new_boxes, kept, new_masks
