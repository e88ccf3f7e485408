"""The mapping between COCO category ids and the model's contiguous labels (0 = background)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LabelMap:
    """``coco_ids[i]`` and ``names[i]`` belong to model label ``i + 1``. Stored with checkpoints."""

    coco_ids: tuple[int, ...]
    names: tuple[str, ...]

    @classmethod
    def from_categories(cls, categories: list[dict[str, Any]]) -> "LabelMap":
        cats = sorted(categories, key=lambda c: c["id"])
        return cls(tuple(int(c["id"]) for c in cats), tuple(str(c["name"]) for c in cats))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LabelMap":
        return cls(tuple(d["coco_ids"]), tuple(d["names"]))

    def to_dict(self) -> dict[str, list]:
        return {"coco_ids": list(self.coco_ids), "names": list(self.names)}

    @property
    def num_classes(self) -> int:
        """Foreground classes plus background, as torchvision's detectors count them."""
        return len(self.coco_ids) + 1

    def label(self, coco_id: int) -> int:
        return self.coco_ids.index(coco_id) + 1

    def coco_id(self, label: int) -> int:
        return self.coco_ids[label - 1]
