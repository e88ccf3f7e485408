"""Merge (and drop) COCO categories, consistently across annotations and categories.

A mapping file names every source category, by name or id, either under ``map`` (its
target category's name) or under ``drop`` (its annotations are removed)::

    map: {car: vehicle, truck: vehicle, 3: person}
    drop: [bicycle]

A source category that is neither mapped nor dropped is an error, before anything is
written. Target categories get ids 1..T in the order they first appear in ``map``.
Images are all kept, including those left without annotations.
"""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from detimb.errors import DatasetError


@dataclass(frozen=True)
class ClassMapping:
    mapping: dict[str | int, str]
    drop: frozenset[str | int]

    @classmethod
    def from_yaml(cls, path: str | Path) -> "ClassMapping":
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise DatasetError(f"{path}: cannot read the class mapping: {err}") from err
        unknown = set(data) - {"map", "drop"}
        if unknown or not isinstance(data.get("map", {}), dict) or not isinstance(data.get("drop", []), list):
            raise DatasetError(f"{path}: a class mapping has 'map' (source -> target name) and 'drop' (a list);"
                               f" found {sorted(data)}")
        return cls({k: str(v) for k, v in (data.get("map") or {}).items()}, frozenset(data.get("drop") or []))


def _resolve(key: str | int, categories: list[dict[str, Any]], where: str) -> int:
    for cat in categories:
        if key == cat["id"] or key == cat["name"] or (isinstance(key, str) and key.isdigit() and int(key) == cat["id"]):
            return cat["id"]
    names = ", ".join(f"{c['name']} ({c['id']})" for c in categories)
    raise DatasetError(f"{where}: '{key}' is not a category of the dataset; its categories are {names}")


def merge_classes(coco: dict[str, Any], mapping: ClassMapping, where: str = "class mapping"
                  ) -> tuple[dict[str, Any], dict[str, dict[str, int]]]:
    """A new COCO dict with categories merged and dropped (``coco`` is not modified), and
    instance counts per category name before and after."""
    cats = coco["categories"]
    target_of: dict[int, str | None] = {}
    for key, target in mapping.mapping.items():
        target_of[_resolve(key, cats, where)] = target
    for key in mapping.drop:
        cid = _resolve(key, cats, where)
        if cid in target_of:
            raise DatasetError(f"{where}: '{key}' is both mapped and dropped; keep one")
        target_of[cid] = None
    unmapped = [c for c in cats if c["id"] not in target_of]
    if unmapped:
        raise DatasetError(f"{where}: categories {', '.join(repr(c['name']) for c in unmapped)} are neither mapped"
                           " nor dropped. Fix: add each under 'map' (to a target name) or 'drop'; nothing was written")
    targets = list(dict.fromkeys(t for t in mapping.mapping.values()))
    if not targets:  # every door refuses a dataset without categories: do not write one
        raise DatasetError(f"{where}: it drops every category, so no class would be left. Fix: map at least one"
                           " category under 'map'; nothing was written")
    new_id = {name: i + 1 for i, name in enumerate(targets)}
    name_of = {c["id"]: c["name"] for c in cats}
    out = copy.deepcopy({k: v for k, v in coco.items() if k not in ("annotations", "categories")})
    out["categories"] = [{"id": new_id[t], "name": t, "supercategory": ""} for t in targets]
    out["annotations"] = []
    for ann in coco["annotations"]:
        target = target_of[ann["category_id"]]
        if target is not None:
            out["annotations"].append({**copy.deepcopy(ann), "category_id": new_id[target]})
    before = Counter(name_of[a["category_id"]] for a in coco["annotations"])
    target_name = {i: name for name, i in new_id.items()}
    after = Counter(target_name[a["category_id"]] for a in out["annotations"])
    return out, {"before": dict(before), "after": dict(after)}
