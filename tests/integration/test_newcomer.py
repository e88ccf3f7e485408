"""The newcomer's first hour, on data this test writes: a georeferenced scene with its labels
as Pascal VOC (pixels) and as WGS84 GeoJSON (what GIS exports). Each step is the console
tool a user types, in order: convert VOC, analyze, tile the GeoTIFF with the WGS84 labels,
train a few iterations from a packaged config (``_base_: [detimb://...]``) with ``--no-eval``,
sliced inference over the scene, evaluation against the scene's own ground truth, export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import transform as reproject

from detimb.cli import analyze, convert, evaluate, export, infer, tile, train

CRS, ORIGIN, PIXEL = "EPSG:32617", (400000.0, 3300000.0), 1.0
TREES = [(12 + 48 * (k % 5), 14 + 60 * (k // 5), 20, 20) for k in range(10)]  # x, y, w, h in scene pixels
BUILDINGS = [(20 + 110 * k, 200, 34, 18) for k in range(2)]


def write_scene(root: Path) -> Path:
    rng = np.random.default_rng(0)
    pixels = rng.integers(20, 60, (3, 256, 256), dtype=np.uint8)
    for x, y, w, h in TREES:
        pixels[:, y:y + h, x:x + w] = np.array([200, 220, 40], np.uint8)[:, None, None]
    for x, y, w, h in BUILDINGS:
        pixels[:, y:y + h, x:x + w] = np.array([60, 90, 230], np.uint8)[:, None, None]
    path = root / "scene.tif"
    with rasterio.open(path, "w", driver="GTiff", width=256, height=256, count=3, dtype="uint8", crs=CRS,
                       transform=from_origin(*ORIGIN, PIXEL, PIXEL)) as dst:
        dst.write(pixels)
    return path


def objects() -> list[tuple[str, tuple[int, int, int, int]]]:
    return [("tree", b) for b in TREES] + [("building", b) for b in BUILDINGS]


def write_voc(root: Path) -> Path:
    """One XML for the scene (VOC's 1-based inclusive corners)."""
    boxes = "".join(f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{x + 1}</xmin><ymin>{y + 1}"
                    f"</ymin><xmax>{x + w}</xmax><ymax>{y + h}</ymax></bndbox></object>"
                    for n, (x, y, w, h) in objects())
    (root / "voc").mkdir()
    (root / "voc" / "scene.xml").write_text(f"<annotation><filename>scene.tif</filename><size><width>256</width>"
                                            f"<height>256</height><depth>3</depth></size>{boxes}</annotation>")
    (root / "classes.txt").write_text("tree\nbuilding\n")
    return root / "voc"


def write_wgs84_geojson(root: Path) -> Path:
    """The same objects as lon/lat polygons, without a crs member (RFC 7946)."""
    features = []
    for name, (x, y, w, h) in objects():
        cols, rows = [x, x + w, x + w, x, x], [y, y, y + h, y + h, y]
        east = [ORIGIN[0] + c * PIXEL for c in cols]
        north = [ORIGIN[1] - r * PIXEL for r in rows]
        lon, lat = reproject(CRS, "EPSG:4326", east, north)
        features.append({"type": "Feature", "properties": {"label": name},
                         "geometry": {"type": "Polygon", "coordinates": [list(map(list, zip(lon, lat)))]}})
    path = root / "labels.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


@pytest.mark.slow
def test_the_newcomers_path_from_labels_to_an_exported_model(tmp_path, capsys):
    scene, voc, labels = write_scene(tmp_path), write_voc(tmp_path), write_wgs84_geojson(tmp_path)
    gt = tmp_path / "scene_gt.json"
    # 1. convert the VOC labels (the scene's ground truth, in pixels)
    assert convert.main(["voc2coco", "--xml", str(voc), "--classes", str(tmp_path / "classes.txt"),
                         "--out", str(gt)]) == 0
    scene_gt = json.loads(gt.read_text())
    assert len(scene_gt["annotations"]) == 12 and scene_gt["annotations"][0]["bbox"] == [12.0, 14.0, 20.0, 20.0]
    # 2. analyze it
    assert analyze.main(["--coco", str(gt), "--out", str(tmp_path / "analysis")]) == 0
    assert (tmp_path / "analysis" / "stats.json").is_file()
    # 3. tile the GeoTIFF with the WGS84 labels: reprojected into the raster's CRS
    assert tile.main(["--raster", str(scene), "--labels", str(labels), "--out", str(tmp_path / "tiles"),
                      "--size", "96", "--overlap", "0.25", "--no-progress"]) == 0
    tiles = json.loads((tmp_path / "tiles" / "annotations.json").read_text())
    assert sum(a["category_id"] == 1 for a in tiles["annotations"]) >= 10  # every tree lands in some tile
    # 4. train a few iterations from a packaged config, without evaluation
    config = tmp_path / "mine.yaml"
    split = {"ann_file": str(tmp_path / "tiles" / "annotations.json"), "img_dir": str(tmp_path / "tiles" / "images")}
    config.write_text(json.dumps({"_base_": ["detimb://demo/faster_rcnn_shapes"], "data": {"train": split,
                                  "val": split}, "model": {"roi_head": {"score_thresh": 0.0}},
                                  "train": {"schedule": {"max_iters": 4}}}))
    work = tmp_path / "run"
    assert train.main(["--config", str(config), "--work-dir", str(work), "--no-eval", "--no-progress"]) == 0
    assert (work / "last.pth").is_file() and not (work / "eval.json").exists()
    # 5. sliced inference over the scene, its detections named by the scene file's image id
    preds = tmp_path / "preds"
    assert infer.main(["--checkpoint", str(work / "last.pth"), "--images", str(scene), "--out", str(preds),
                       "--coco", str(gt), "--tile", "96", "--overlap", "0.25", "--no-progress"]) == 0
    results = json.loads((preds / "results_bbox.json").read_text())
    assert results and {r["image_id"] for r in results} == {1}
    assert (preds / "scene.geojson").is_file()
    # 6. evaluate the scene's detections against the scene's ground truth; converted without the
    # class order, the file numbers building 1 and tree 2 where the tiles (and results) say tree 1
    sorted_gt = tmp_path / "scene_gt_sorted.json"
    assert convert.main(["voc2coco", "--xml", str(voc), "--out", str(sorted_gt)]) == 0
    assert evaluate.main(["--config", str(work / "config.yaml"), "--results", str(preds / "results_bbox.json"),
                          "--gt", str(sorted_gt), "--out", str(tmp_path / "wrong")]) == 2
    assert "id 1 is 'tree' in annotations.json but 'building' in scene_gt_sorted.json" in capsys.readouterr().err
    assert evaluate.main(["--config", str(work / "config.yaml"), "--results", str(preds / "results_bbox.json"),
                          "--gt", str(gt), "--out", str(tmp_path / "scored")]) == 0
    report = json.loads((tmp_path / "scored" / "eval.json").read_text())["bbox"]
    assert {e["name"] for e in report["per_class"]} == {"tree", "building"}
    # 7. export, checked against the eager model on one of the tiles
    first_tile = tmp_path / "tiles" / "images" / tiles["images"][0]["file_name"]
    assert export.main(["--checkpoint", str(work / "last.pth"), "--format", "torchscript", "--out",
                        str(tmp_path / "model.pt"), "--image", str(first_tile)]) == 0
    assert "equal to the eager model's" in capsys.readouterr().out
