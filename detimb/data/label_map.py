"""The mapping between COCO category ids and the model's contiguous labels (0 = background)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from detimb.errors import ConfigError


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
        if not 1 <= label <= len(self.coco_ids):
            raise ValueError(f"label {label} names no class: labels run 1..{len(self.coco_ids)} (0 is background)")
        return self.coco_ids[label - 1]

    def labels_of(self, values: Any, where: str) -> list[int]:
        """Category ids or names, as written in a config, as labels (1..K)."""
        labels = []
        for v in values or []:
            if isinstance(v, str) and v in self.names:
                labels.append(self.names.index(v) + 1)
            elif isinstance(v, int) and not isinstance(v, bool) and v in self.coco_ids:
                labels.append(self.label(v))
            else:
                raise ConfigError(f"{where}: {v!r} is neither a category id nor a name of this dataset;"
                                  f" categories: {dict(zip(self.coco_ids, self.names))}")
        return labels
