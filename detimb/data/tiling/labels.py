"""Labels for a single raster: GeoJSON features in map coordinates, or a COCO file in pixels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.warp import transform_geom
from shapely.geometry import shape

from detimb.data.tiling.raster import apply_affine
from detimb.data.label_files import read_label_text
from detimb.errors import DatasetError


Records = list[dict[str, Any]]


WGS84 = "OGC:CRS84"  # RFC 7946: longitude, latitude


def labels_crs(data: dict[str, Any], features: list[dict[str, Any]], path: Path) -> str | None:
    """The CRS a GeoJSON's coordinates are in: its ``crs`` member (as GDAL and detimb-infer
    write it), else WGS84 as RFC 7946 says, unless the coordinates cannot be longitude and
    latitude (beyond +-180 / +-90: a legacy file in the raster's own CRS, returned as None)."""
    named = data.get("crs")
    if named is not None:
        try:
            return str(named["properties"]["name"])
        except (KeyError, TypeError) as err:
            raise DatasetError(f"{path}: its 'crs' member {named!r} names no CRS. Fix: write"
                               " {\"type\": \"name\", \"properties\": {\"name\": \"EPSG:32617\"}}, or leave it out for"
                               " longitude/latitude (RFC 7946)") from err
    for feature in features:
        geometry = feature.get("geometry") if isinstance(feature, dict) else None
        if geometry:
            x0, y0, x1, y1 = shape(geometry).bounds
            if min(x0, x1) < -180 or max(x0, x1) > 180 or min(y0, y1) < -90 or max(y0, y1) > 90:
                return None
    return WGS84


def read_label_json(path: str | Path) -> Any:
    """A label file's parsed JSON (GeoJSON or COCO), or a named error: missing, a folder,
    not UTF-8, not JSON."""
    path = Path(path)
    fix = "Fix: --labels takes a GeoJSON FeatureCollection or a COCO .json file"
    text = read_label_text(path, fix)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path}: not JSON (line {err.lineno}, column {err.colno}: {err.msg}). {fix}") from err


def geojson_annotations(path: str | Path, transform: Any, label_field: str = "label",
                        category_ids: dict[str, int] | None = None, raster_crs: Any = None,
                        raster_size: tuple[int, int] | None = None) -> tuple[Records, Records]:
    """(annotations in pixel coordinates, categories) from a GeoJSON FeatureCollection. Its
    coordinates are reprojected into ``raster_crs`` from the CRS it states (``labels_crs``:
    its ``crs`` member, else WGS84 per RFC 7946). Each feature's class is
    ``properties[label_field]`` (a feature without it is an error naming the feature);
    polygons keep their outline as a COCO polygon, points and lines are refused. With
    ``raster_size`` (width, height), a file whose features all fall outside the raster is
    an error naming both extents."""
    path = Path(path)
    data = read_label_json(path)
    features = data.get("features") if isinstance(data, dict) else None
    if not isinstance(features, list):
        raise DatasetError(f"{path}: not a GeoJSON FeatureCollection (no 'features' list)")
    source_crs = labels_crs(data, features, path) if raster_crs is not None else None
    inverse = ~transform
    names = category_ids or {}
    anns: list[dict[str, Any]] = []
    for i, feature in enumerate(features):
        props = feature.get("properties") or {}
        if label_field not in props:
            raise DatasetError(f"{path}: feature {i} has no property '{label_field}'. Fix: add it, or pass"
                               " --label-field with the property that holds the class")
        if not feature.get("geometry"):
            raise DatasetError(f"{path}: feature {i} has no geometry (null). Fix: remove the feature or give its"
                               " polygon")
        geometry = feature["geometry"]
        if source_crs is not None:
            geometry = transform_geom(source_crs, raster_crs, geometry)
        geom = shape(geometry)
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
    if raster_size is not None and anns:
        _refuse_all_outside(path, anns, raster_size, source_crs, raster_crs)
    categories = [{"id": cid, "name": n} for n, cid in sorted(names.items(), key=lambda kv: kv[1])]
    return anns, categories


def _refuse_all_outside(path: Path, anns: Records, size: tuple[int, int], source_crs: str | None,
                        raster_crs: Any) -> None:
    width, height = size
    boxes = np.array([a["bbox"] for a in anns], dtype=np.float64)
    inside = (boxes[:, 0] < width) & (boxes[:, 1] < height) & (boxes[:, 0] + boxes[:, 2] > 0) & \
        (boxes[:, 1] + boxes[:, 3] > 0)
    if not inside.any():
        x0, y0 = boxes[:, 0].min(), boxes[:, 1].min()
        x1, y1 = (boxes[:, 0] + boxes[:, 2]).max(), (boxes[:, 1] + boxes[:, 3]).max()
        read_as = f"read in {source_crs}" if source_crs else "read in the raster's CRS (coordinates beyond lon/lat)"
        raise DatasetError(f"{path}: none of its {len(anns)} features falls on the raster: they span pixels"
                           f" ({x0:.0f}, {y0:.0f}) to ({x1:.0f}, {y1:.0f}) ({read_as}), the raster 0 to {width} x 0"
                           f" to {height} (CRS {raster_crs}). Fix: give the labels of this raster, or name their CRS"
                           " in a 'crs' member")
