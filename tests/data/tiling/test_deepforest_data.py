"""Real aerial imagery: the deepforest wheel's data (MIT), fetched with pip, never installed.

``OSBS_029.tif`` is a georeferenced 400 x 400 GeoTIFF (EPSG:32617, 0.1 m) with 61 tree
boxes; ``2019_YELL_2_528000_4978000_image_crop2.png`` is a 2299 x 2472 scene with 574.
"""

import csv
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile

import cv2
import numpy as np
import pytest
import rasterio

from detimb.cli import tile as tile_cli
from detimb.data.coco_validate import read_coco_json
from detimb.data.tiling.raster import apply_affine

WHEEL = "deepforest==2.1.0"
SCENE = "2019_YELL_2_528000_4978000_image_crop2"


@pytest.fixture(scope="session")
def deepforest_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("deepforest")
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", WHEEL, "-d", str(root)],
                          capture_output=True, text=True, timeout=300)
    wheels = list(root.glob("deepforest-*.whl"))
    if proc.returncode != 0 or not wheels:
        pytest.skip(f"cannot fetch {WHEEL} from the package index: {proc.stderr.strip()[-300:]}")
    with zipfile.ZipFile(wheels[0]) as z:
        z.extractall(root, [n for n in z.namelist() if n.startswith("deepforest/data/")])
    return root / "deepforest" / "data"


def coco_from_boxes(name, width, height, boxes):
    return {"images": [{"id": 1, "file_name": name, "width": width, "height": height}],
            "categories": [{"id": 1, "name": "Tree"}],
            "annotations": [{"id": i + 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
                             "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0)}
                            for i, (x0, y0, x1, y1) in enumerate(boxes)]}


def shifted_back(data):
    tiles = {im["id"]: im["tile"] for im in data["images"]}
    back = {}
    for a in data["annotations"]:
        t = tiles[a["image_id"]]
        x, y, w, h = a["bbox"]
        back.setdefault(a["parent_annotation_id"], []).append([x + t["x0"], y + t["y0"], w, h])
    return back


def test_georeferenced_tiles_of_a_real_geotiff(deepforest_data, tmp_path):
    with open(deepforest_data / "OSBS_029.csv") as f:
        boxes = [[float(r[k]) for k in ("xmin", "ymin", "xmax", "ymax")] for r in csv.DictReader(f)]
    assert len(boxes) == 61
    labels = tmp_path / "osbs.json"
    labels.write_text(json.dumps(coco_from_boxes("OSBS_029.tif", 400, 400, boxes)))
    assert tile_cli.main(["--raster", str(deepforest_data / "OSBS_029.tif"), "--labels", str(labels),
                          "--out", str(tmp_path / "t"), "--size", "200", "--overlap", "80", "--no-progress"]) == 0
    data = read_coco_json(tmp_path / "t" / "annotations.json")
    assert len(data["images"]) == 9  # 0, 120, 200 on each axis
    with rasterio.open(deepforest_data / "OSBS_029.tif") as src:
        scene = src.read()
        origin = apply_affine(src.transform, 0, 0)
    im = next(i for i in data["images"] if (i["tile"]["x0"], i["tile"]["y0"]) == (120, 200))
    with rasterio.open(tmp_path / "t" / "images" / im["file_name"]) as t:
        assert t.crs.to_epsg() == 32617
        assert apply_affine(t.transform, 0, 0) == pytest.approx((origin[0] + 12.0, origin[1] - 20.0))
        assert (t.read() == scene[:, 200:400, 120:320]).all()
    back = shifted_back(data)
    for i, (x0, y0, x1, y1) in enumerate(boxes, start=1):  # trees (<= 64 px) fit in the 80 px overlap
        assert any(np.allclose(b, [x0, y0, x1 - x0, y1 - y0], atol=1e-3) for b in back[i])


def test_a_real_2299_by_2472_scene_with_574_boxes(deepforest_data, tmp_path):
    root = ET.parse(deepforest_data / f"{SCENE}.xml").getroot()
    boxes = [[float(o.find(f"bndbox/{k}").text) for k in ("xmin", "ymin", "xmax", "ymax")]
             for o in root.iter("object")]
    assert len(boxes) == 574
    ann = tmp_path / "scene.json"
    ann.write_text(json.dumps(coco_from_boxes(f"{SCENE}.png", 2299, 2472, boxes)))
    assert tile_cli.main(["--coco", str(ann), "--images", str(deepforest_data), "--out", str(tmp_path / "t"),
                          "--size", "512", "--overlap", "0.2", "--no-progress"]) == 0
    data = read_coco_json(tmp_path / "t" / "annotations.json")
    assert len(data["images"]) == 6 * 6  # 0, 410, 820, 1230, 1640, 1787 (x); ... 1960 (y)
    back = shifted_back(data)
    assert all(any(np.allclose(b, [x0, y0, x1 - x0, y1 - y0], atol=1e-3) for b in back[i])
               for i, (x0, y0, x1, y1) in enumerate(boxes, start=1))
    scene = cv2.imread(str(deepforest_data / f"{SCENE}.png"))
    tile = cv2.imread(str(tmp_path / "t" / "images" / f"{SCENE}_x1787_y1960.png"))
    assert tile is not None and (tile == scene[1960:2472, 1787:2299]).all()
