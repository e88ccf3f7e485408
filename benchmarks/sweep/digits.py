"""A third long-tailed detection set, from a source the remedies were not chosen on: real
handwritten digits (the UCI optical-recognition digits that scikit-learn ships:
``pip install scikit-learn``), pasted onto cluttered canvases as the Fashion-MNIST set is.

Each 8 x 8 digit (values 0-16) is enlarged to 28 x 28 and drawn as that garment set draws its
garments (``detimb.data.fashion.write_glyph_split``: intensity as alpha, tinted, RLE mask).
Glyphs are split once: the first 1200 samples for training canvases, the rest for
validation, so no handwritten sample is in both. Counts: 10 classes, 1200 down to 6 training
instances; 40 of each class in validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from detimb.data.fashion import FashionSpec, write_glyph_split

DIGITS = tuple(f"digit{d}" for d in range(10))
TRAIN_GLYPHS = 1200


@dataclass(kw_only=True)
class DigitsSpec:
    train_counts: tuple[int, ...] = (1200, 600, 300, 150, 80, 40, 25, 15, 10, 6)
    val_counts: tuple[int, ...] = (40,) * 10
    canvas_size: int = 128
    seed: int = 0


def load_glyphs() -> tuple[np.ndarray, np.ndarray]:
    """(N, 28, 28) uint8 digits and their labels, from scikit-learn's copy of the UCI set."""
    from sklearn.datasets import load_digits  # the benchmark's own dependency, not detimb's

    digits = load_digits()
    small = (digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    large = np.stack([cv2.resize(im, (28, 28), interpolation=cv2.INTER_LINEAR) for im in small])
    return large, digits.target.astype(np.int64)


def make_digits_dataset(out: str | Path, spec: DigitsSpec) -> dict[str, Path]:
    images, labels = load_glyphs()
    out = Path(out)
    canvas = FashionSpec(train_counts=spec.train_counts, val_counts=spec.val_counts, canvas_size=spec.canvas_size,
                         seed=spec.seed)
    paths = {}
    for offset, (split, counts, rows) in enumerate((("train", spec.train_counts, slice(0, TRAIN_GLYPHS)),
                                                    ("val", spec.val_counts, slice(TRAIN_GLYPHS, None)))):
        write_glyph_split(out, split, counts, canvas, images[rows], labels[rows], seed=spec.seed * 2 + offset,
                          names=DIGITS, source="handwritten digits (UCI, scikit-learn)", supercategory="digit")
        paths[split] = out / "annotations" / f"{split}.json"
    return paths
