"""Detections of a georeferenced scene written as map features: GeoJSON in the scene's CRS or
in WGS84 longitude/latitude (RFC 7946), and GeoPackage (the ``geo`` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from rasterio.warp import transform_geom

from detimb.data.label_map import LabelMap
from detimb.data.tiling.raster import apply_affine
from detimb.inference.scene_masks import polygons
from detimb.inference.sliced import ScenePrediction
from detimb.optional import require_extra
from detimb.utils import atomic_write_json


def detection_features(pred: ScenePrediction, label_map: LabelMap, wgs84: bool = False) -> list[dict[str, Any]]:
    """GeoJSON features of the detections in the raster's CRS, or reprojected to WGS84
    longitude/latitude (``rasterio.warp.transform_geom``), with class, category id and
    score. Boxes are Polygons; a model with masks gives MultiPolygons of the mask's pixels
    and a ``mask_pixels`` property (0: the mask is empty at the threshold and the outline
    is the box)."""
    t, masks = pred.transform, pred.masks
    features = []
    for k, ((x0, y0, x1, y1), s, lab) in enumerate(zip(pred.boxes.tolist(), pred.scores.tolist(),
                                                       pred.labels.tolist())):
        ring = [list(apply_affine(t, x, y)) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0))]
        geometry: dict[str, Any] = {"type": "Polygon", "coordinates": [ring]}
        properties = {"label": label_map.names[int(lab) - 1], "category_id": label_map.coco_id(int(lab)),
                      "score": float(s)}
        if masks is not None:
            mask = masks[k]
            geometry = {"type": "MultiPolygon", "coordinates": [[ring]]} if mask is None else polygons(mask, t)
            properties["mask_pixels"] = 0 if mask is None else int(mask_utils.area(mask.rle))
        if wgs84:
            geometry = {"type": geometry["type"],
                        "coordinates": _lists(transform_geom(pred.crs, "EPSG:4326", geometry)["coordinates"])}
        features.append({"type": "Feature", "geometry": geometry, "properties": properties})
    return features


def _lists(coordinates: Any) -> Any:
    """Nested coordinate tuples as lists, as JSON writes them."""
    if isinstance(coordinates, (list, tuple)) and coordinates and isinstance(coordinates[0], (int, float)):
        return list(coordinates)
    return [_lists(c) for c in coordinates]


def write_geojson(path: Path, pred: ScenePrediction, label_map: LabelMap, wgs84: bool = False) -> None:
    """Boxes (masks, where predicted) as polygons in the raster's CRS (named in a ``crs``
    member, as GDAL reads it), or with ``wgs84`` reprojected to longitude/latitude without a
    ``crs`` member (RFC 7946)."""
    data: dict[str, Any] = {"type": "FeatureCollection"}
    if not wgs84:
        data["crs"] = {"type": "name", "properties": {"name": pred.crs}}
    data["features"] = detection_features(pred, label_map, wgs84)
    atomic_write_json(path, data)


def write_geopackage(path: Path, pred: ScenePrediction, label_map: LabelMap, scene: str) -> None:
    """One GeoPackage layer, ``detections``: the boxes as polygons (the masks as
    multipolygons, with ``mask_pixels``, where predicted) in the raster's CRS with ``label``,
    ``category_id``, ``score`` and ``scene`` (pyogrio, the ``geo`` extra); written to a
    temporary file beside ``path`` and moved into place."""
    require_extra("geo", "--gpkg (GeoPackage output)", ("pyogrio", "shapely"))
    import shapely
    from pyogrio.raw import write as write_layer

    features = detection_features(pred, label_map)
    geometry = np.array([shapely.to_wkb(shapely.geometry.shape(f["geometry"])) for f in features], dtype=object)
    columns = {"label": np.array([f["properties"]["label"] for f in features], dtype=object),
               "category_id": np.array([f["properties"]["category_id"] for f in features], dtype=np.int64),
               "score": np.array([f["properties"]["score"] for f in features], dtype=np.float64),
               "scene": np.array([scene] * len(features), dtype=object)}
    if pred.masks is not None:
        columns["mask_pixels"] = np.array([f["properties"]["mask_pixels"] for f in features], dtype=np.int64)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    tmp.unlink(missing_ok=True)
    try:
        write_layer(str(tmp), geometry, list(columns.values()), fields=list(columns), layer="detections",
                    driver="GPKG", geometry_type="Polygon" if pred.masks is None else "MultiPolygon",
                    crs=pred.crs)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
