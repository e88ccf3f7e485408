"""Labels for a single raster: GeoJSON features in map coordinates, or a COCO file in pixels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from shapely.geometry import shape

from detimb.data.tiling.raster import apply_affine
from detimb.errors import DatasetError


Records = list[dict[str, Any]]


def geojson_annotations(path: str | Path, transform: Any, label_field: str = "label",
                        category_ids: dict[str, int] | None = None) -> tuple[Records, Records]:
    """(annotations in pixel coordinates, categories) from a GeoJSON FeatureCollection whose
    coordinates are in the raster's CRS. Each feature's class is ``properties[label_field]``
    (a feature without it is an error naming the feature); polygons keep their outline as a
    COCO polygon, points and lines are refused."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DatasetError(f"{path}: cannot read GeoJSON ({err})") from err
    features = data.get("features") if isinstance(data, dict) else None
    if not isinstance(features, list):
        raise DatasetError(f"{path}: not a GeoJSON FeatureCollection (no 'features' list)")
    inverse = ~transform
    names = category_ids or {}
    anns: list[dict[str, Any]] = []
    for i, feature in enumerate(features):
        props = feature.get("properties") or {}
        if label_field not in props:
            raise DatasetError(f"{path}: feature {i} has no property '{label_field}'. Fix: add it, or pass"
                               " --label-field with the property that holds the class")
        geom = shape(feature["geometry"])
        if geom.geom_type not in ("Polygon", "MultiPolygon"):
            raise DatasetError(f"{path}: feature {i} is a {geom.geom_type}; only polygons become boxes and masks")
        name = str(props[label_field])
        if name not in names:
            names[name] = len(names) + 1
        polygons = []
        for poly in getattr(geom, "geoms", [geom]):
            xy = np.asarray(poly.exterior.coords)
            cols, rows = apply_affine(inverse, xy[:, 0], xy[:, 1])
            polygons.append([round(float(v), 3) for v in np.stack([cols, rows], 1)[:-1].reshape(-1)])
        flat = np.concatenate([np.asarray(p).reshape(-1, 2) for p in polygons])
        x0, y0 = flat.min(0)
        x1, y1 = flat.max(0)
        area = float(sum(shape({"type": "Polygon", "coordinates": [np.asarray(p).reshape(-1, 2).tolist()]}).area
                         for p in polygons))
        anns.append({"id": i + 1, "category_id": names[name], "bbox": [float(x0), float(y0), float(x1 - x0),
                                                                         float(y1 - y0)],
                     "area": area, "iscrowd": 0, "segmentation": polygons})
    categories = [{"id": cid, "name": n} for n, cid in sorted(names.items(), key=lambda kv: kv[1])]
    return anns, categories
