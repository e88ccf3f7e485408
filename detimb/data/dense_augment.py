"""Batch-free augmentations for dense prediction: mixup, asymmetric mixup (Li, Kamnitsas,
Glocker, TMI 2021), and asymmetric augmentation.

Mixup produces two label maps and a per-pixel weight of the first: the loss of a pixel is
``mix * L(label_a) + (1 - mix) * L(label_b)``, which for cross-entropy equals the loss on
the mixed soft label. Random numbers come from a ``Generator`` the dataset seeds per item.
"""

from __future__ import annotations

import numpy as np

from detimb.registry import Registry

MIXUPS = Registry("mixup")


@MIXUPS.register("mixup")
class Mixup:
    """Mixup (Zhang et al., ICLR 2018): with probability ``p`` an item is blended with a
    second one, ``x = lam * x_a + (1 - lam) * x_b``, ``lam ~ Beta(alpha, alpha)``, each
    pixel's loss weighted lam / 1 - lam between the two label maps. Pixels ignored in
    either map are ignored. Defaults: alpha=0.2, p=1.0."""

    def __init__(self, alpha: float = 0.2, p: float = 1.0) -> None:
        if alpha <= 0 or not 0.0 <= p <= 1.0:
            raise ValueError(f"need alpha > 0 and 0 <= p <= 1, got alpha={alpha}, p={p}")
        self.alpha, self.p = alpha, p

    def pixel_weight(self, lam: float, map_a: np.ndarray, map_b: np.ndarray) -> np.ndarray:
        """(H, W) float32: the weight of ``map_a``'s label at each pixel."""
        return np.full(map_a.shape, lam, dtype=np.float32)

    def __call__(self, image_a: np.ndarray, map_a: np.ndarray, image_b: np.ndarray, map_b: np.ndarray,
                 rng: np.random.Generator, ignore_index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(image, map_a, map_b, weight of map_a): images (H, W, 3) uint8, maps (H, W) int64."""
        lam = float(rng.beta(self.alpha, self.alpha))
        image = (lam * image_a.astype(np.float32) + (1 - lam) * image_b.astype(np.float32)).round().astype(np.uint8)
        ignored = (map_a == ignore_index) | (map_b == ignore_index)
        map_a = np.where(ignored, ignore_index, map_a)
        map_b = np.where(ignored, ignore_index, map_b)
        return image, map_a, map_b, self.pixel_weight(lam, map_a, map_b)


@MIXUPS.register("asymmetric")
class AsymmetricMixup(Mixup):
    """Asymmetric mixup (Li, Kamnitsas, Glocker, TMI 2021): as mixup, but a pixel whose
    mix contains a rare class (``rare_classes``, labels) with a weight above ``margin``
    keeps the rare label alone (weight 1); when both labels are rare and above the margin
    the larger weight wins. The rare classes' evidence is never diluted into a soft label.
    Defaults: alpha=0.2, margin=0.0, rare_classes=[], p=1.0."""

    def __init__(self, alpha: float = 0.2, margin: float = 0.0, rare_classes: list[int] | None = None,
                 p: float = 1.0) -> None:
        super().__init__(alpha, p)
        if not 0.0 <= margin < 1.0:
            raise ValueError(f"margin must be in [0, 1), got {margin}")
        self.margin = margin
        self.rare = np.array(sorted(int(c) for c in rare_classes or []), dtype=np.int64)

    def pixel_weight(self, lam: float, map_a: np.ndarray, map_b: np.ndarray) -> np.ndarray:
        weight = np.full(map_a.shape, lam, dtype=np.float32)
        rare_a = np.isin(map_a, self.rare) & (lam > self.margin)
        rare_b = np.isin(map_b, self.rare) & (1 - lam > self.margin)
        a_wins = rare_a & (~rare_b | (lam >= 1 - lam))
        b_wins = rare_b & ~a_wins
        weight[a_wins] = 1.0
        weight[b_wins] = 0.0
        return weight


class AsymmetricAugmentation:
    """Asymmetric augmentation (Li, Kamnitsas, Glocker, TMI 2021): the training transforms
    are applied to every item that contains a pixel of ``classes`` (labels; default any
    foreground class) and only with probability ``background_p`` to the others, so the
    augmented variety goes to the under-represented classes. Default background_p=0.2."""

    def __init__(self, background_p: float = 0.2, classes: list[int] | None = None) -> None:
        if not 0.0 <= background_p <= 1.0:
            raise ValueError(f"background_p must be in [0, 1], got {background_p}")
        self.background_p = background_p
        self.classes = None if classes is None else np.array(sorted(int(c) for c in classes), dtype=np.int64)

    def augment(self, class_map: np.ndarray, rng: np.random.Generator, ignore_index: int) -> bool:
        if self.classes is None:
            wanted = ((class_map > 0) & (class_map != ignore_index)).any()
        else:
            wanted = np.isin(class_map, self.classes).any()
        return bool(wanted) or bool(rng.random() < self.background_p)
