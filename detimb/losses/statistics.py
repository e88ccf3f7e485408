"""What class-aware losses know about the training set, in one typed record."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor


@dataclass(frozen=True)
class ClassStatistics:
    """Training-set statistics of the K foreground classes, in label order (label 1 first).

    instances: annotated instances per class (pixels per class for segmentation).
    images: training images that contain each class.
    num_images: training images in all.
    """

    instances: tuple[int, ...]
    images: tuple[int, ...]
    num_images: int

    def __post_init__(self) -> None:
        if len(self.instances) != len(self.images):
            raise ValueError(f"ClassStatistics: {len(self.instances)} instance counts but {len(self.images)}"
                             " image counts; give one of each per foreground class")

    @classmethod
    def from_instances(cls, instances: list[int] | tuple[int, ...], num_images: int | None = None
                       ) -> ClassStatistics:
        """Statistics known only by instance counts (each instance taken as its own image)."""
        counts = tuple(int(c) for c in instances)
        return cls(counts, counts, int(num_images if num_images is not None else max(1, sum(counts))))

    @classmethod
    def from_coco(cls, data: dict[str, Any], coco_ids: tuple[int, ...]) -> ClassStatistics:
        """Instances and images per category of a COCO dict, in the order of ``coco_ids``
        (crowd annotations left out, as COCO evaluation leaves them)."""
        anns = [a for a in data["annotations"] if not a.get("iscrowd", 0)]
        instances = Counter(a["category_id"] for a in anns)
        images = Counter(cid for cid, _ in {(a["category_id"], a["image_id"]) for a in anns})
        return cls(tuple(instances.get(c, 0) for c in coco_ids), tuple(images.get(c, 0) for c in coco_ids),
                   len(data["images"]))

    def to_dict(self) -> dict[str, Any]:
        """Plain lists and ints, as a checkpoint stores them."""
        return {"instances": list(self.instances), "images": list(self.images), "num_images": self.num_images}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClassStatistics:
        return cls(tuple(int(x) for x in d["instances"]), tuple(int(x) for x in d["images"]), int(d["num_images"]))

    @property
    def num_classes(self) -> int:
        """K, the number of foreground classes."""
        return len(self.instances)

    def image_frequency(self) -> Tensor:
        """(K,) float: the fraction of training images that contain each class (EQL's f_j)."""
        return torch.tensor(self.images, dtype=torch.float64) / max(1, self.num_images)
