"""Sliced inference over a generated GeoTIFF, with a detector whose answers are known; the CLI."""

import json
import re

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from torch import nn

from detimb.cli import infer
from detimb.data.label_map import LabelMap
from detimb.inference.geo import write_geojson
from detimb.inference.sliced import SliceSettings, coco_records, sliced_predict
from detimb.engine.trainer import Trainer
from detimb.errors import DatasetError
from tests.conftest import needs_extra

SQUARES = [(10, 12, 30, 32), (150, 100, 181, 131)]  # x0, y0, x1, y1 in scene pixels


class BrightBox(nn.Module):
    """'Detects' the bounding box of the bright pixels of each tile (label 1, score 1)."""

    def forward(self, images):
        out = []
        for im in images:
            ys, xs = torch.nonzero(im[0] > 0.5, as_tuple=True)
            if len(xs):
                box = torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float32)
                out.append({"boxes": box, "scores": torch.ones(1), "labels": torch.ones(1, dtype=torch.int64)})
            else:
                out.append({"boxes": torch.zeros(0, 4), "scores": torch.zeros(0),
                            "labels": torch.zeros(0, dtype=torch.int64)})
        return out


@pytest.fixture
def scene(tmp_path):
    pixels = np.zeros((3, 150, 200), dtype=np.uint8)
    for x0, y0, x1, y1 in SQUARES:
        pixels[:, y0:y1, x0:x1] = 255
    path = tmp_path / "scene.tif"
    with rasterio.open(path, "w", driver="GTiff", width=200, height=150, count=3, dtype="uint8", crs="EPSG:32617",
                       transform=from_origin(400000.0, 3300000.0, 0.1, 0.1)) as dst:
        dst.write(pixels)
    return path


def test_pieces_cut_by_tiles_merge_back_into_whole_objects(scene, tmp_path):
    settings = SliceSettings(size=(64, 64), overlap=0.25, batch_size=3, method="greedy_nmm", match="ios")
    pred = sliced_predict(BrightBox(), scene, settings, torch.device("cpu"))
    assert pred.tiles == 4 * 3  # x: 0, 48, 96, 136; y: 0, 48, 86
    assert sorted(map(tuple, pred.boxes.tolist())) == [tuple(map(float, s)) for s in SQUARES]
    nms = sliced_predict(BrightBox(), scene, SliceSettings(size=(64, 64), overlap=0.25, method="nms", match="iou"),
                         torch.device("cpu"))
    assert len(nms.boxes) > 2  # NMS by IoU keeps the cut pieces: why NMM by IoS is the default
    label_map = LabelMap((7,), ("tree",))
    records = coco_records(pred, 5, label_map)["bbox"]
    assert {r["category_id"] for r in records} == {7} and sorted(r["bbox"] for r in records)[0] == [10, 12, 20, 20]
    write_geojson(tmp_path / "out.geojson", pred, label_map)
    geo = json.loads((tmp_path / "out.geojson").read_text())
    assert geo["crs"]["properties"]["name"] == "EPSG:32617"
    ring = next(f for f in geo["features"] if f["geometry"]["coordinates"][0][0][0] < 400002)["geometry"]
    # pixel (10, 12) -> 400000 + 10 * 0.1, 3300000 - 12 * 0.1
    assert ring["coordinates"][0][0] == pytest.approx([400001.0, 3299998.8])


def test_infer_cli_writes_results_and_geojson(tiny_config, tmp_path, scene, capsys):
    cfg = tiny_config("faster_rcnn", train={"schedule": {"max_iters": 1}, "eval_interval": 100})
    Trainer(cfg, tmp_path / "run", progress=False).train()
    code = infer.main(["--config", str(tmp_path / "run" / "config.yaml"), "--checkpoint",
                       str(tmp_path / "run" / "last.pth"), "--images", str(scene), "--out", str(tmp_path / "preds"),
                       "--tile", "64", "--overlap", "0.2", "--full-image", "--draw", str(tmp_path / "drawn"),
                       "--max-draw", "5", "--draw-max-side", "100", "--gpkg", "--geojson-crs", "wgs84"])
    assert code == 0 and "scene.tif: 12 tiles" in capsys.readouterr().out
    from PIL import Image

    with Image.open(tmp_path / "drawn" / "scene.png") as picture:  # 200 px wide scene read decimated to 100
        assert max(picture.size) == 100
    results = json.loads((tmp_path / "preds" / "results_bbox.json").read_text())
    assert all(r["image_id"] == 1 and len(r["bbox"]) == 4 for r in results)
    geo = json.loads((tmp_path / "preds" / "scene.geojson").read_text())
    assert geo["type"] == "FeatureCollection" and len(geo["features"]) == len(results) and "crs" not in geo
    assert (tmp_path / "preds" / "scene.gpkg").is_file()
    assert json.loads((tmp_path / "preds" / "images.json").read_text())[0]["width"] == 200


def test_geopackage_and_wgs84_geojson_read_back(scene, tmp_path):
    pyogrio = needs_extra("pyogrio", "geo")
    import shapely
    from rasterio.warp import transform_geom

    from detimb.inference.geo import write_geopackage

    settings = SliceSettings(size=(64, 64), overlap=0.25, batch_size=3, method="greedy_nmm", match="ios")
    pred = sliced_predict(BrightBox(), scene, settings, torch.device("cpu"))
    label_map = LabelMap((7,), ("tree",))
    write_geojson(tmp_path / "scene.geojson", pred, label_map)
    write_geojson(tmp_path / "wgs84.geojson", pred, label_map, wgs84=True)
    write_geopackage(tmp_path / "scene.gpkg", pred, label_map, "scene.tif")
    native = json.loads((tmp_path / "scene.geojson").read_text())
    meta, _, geometry, fields = pyogrio.raw.read(str(tmp_path / "scene.gpkg"), layer="detections")
    assert meta["crs"] == "EPSG:32617" and meta["geometry_type"] == "Polygon"
    columns = dict(zip(meta["fields"], fields))
    assert len(geometry) == len(native["features"]) == 2
    for k, feature in enumerate(native["features"]):
        assert shapely.from_wkb(geometry[k]).equals(shapely.geometry.shape(feature["geometry"]))
        assert columns["label"][k] == "tree" and columns["category_id"][k] == 7 and columns["scene"][k] == "scene.tif"
        assert columns["score"][k] == feature["properties"]["score"]
    # RFC 7946: longitude/latitude, no crs member; the same as rasterio's own reprojection
    wgs84 = json.loads((tmp_path / "wgs84.geojson").read_text())
    assert "crs" not in wgs84
    for ours, theirs in zip(wgs84["features"], native["features"]):
        want = transform_geom("EPSG:32617", "EPSG:4326", theirs["geometry"])["coordinates"][0]
        got = ours["geometry"]["coordinates"][0]
        assert np.allclose(np.array(got), np.array(want), atol=1e-9, rtol=0)
        assert -83 < got[0][0] < -81 and 29 < got[0][1] < 30.5  # UTM 17N near (400 km, 3300 km): north Florida


class Failing(nn.Module):
    def forward(self, images):
        raise RuntimeError("boom")


def test_prefetched_reading_gives_the_same_predictions_and_stops_cleanly(scene):
    import threading

    base = dict(size=(64, 64), overlap=0.25, batch_size=2, method="greedy_nmm", match="ios")
    ahead = sliced_predict(BrightBox(), scene, SliceSettings(**base, prefetch=3), torch.device("cpu"))
    inline = sliced_predict(BrightBox(), scene, SliceSettings(**base, prefetch=0), torch.device("cpu"))
    assert torch.equal(ahead.boxes, inline.boxes) and ahead.tiles == inline.tiles == 12
    assert 0 <= ahead.wait_s <= ahead.wall_s
    with pytest.raises(RuntimeError, match="boom"):
        sliced_predict(Failing(), scene, SliceSettings(**base, prefetch=2), torch.device("cpu"))
    assert not any(t.name == "detimb-tile-reader" for t in threading.enumerate())


def test_full_image_pass_reads_a_decimated_overview(scene):
    # a 200 x 150 scene read at most 100 px wide: BrightBox finds the squares at half size,
    # scaled back to scene pixels (to within the averaging's blur)
    settings = SliceSettings(size=(64, 64), overlap=0.25, full_image=True, full_image_side=100, method="nms",
                             match="iou", threshold=0.99, class_agnostic=True)
    pred = sliced_predict(BrightBox(), scene, settings, torch.device("cpu"))
    whole = [b for b in pred.boxes.tolist() if b[0] <= 12 and b[2] >= 180]  # the overview's one box spans both
    assert whole and whole[0] == pytest.approx([10, 12, 182, 132], abs=2.1)


# --- masks: kept as crops, merged with their boxes, written as RLE and polygons ----------

RING = (52, 54, 92, 94)  # a hollow square (x0, y0, x1, y1) seen whole only by the tile at (48, 48)
HOLE = (64, 66, 80, 82)


class BrightMask(BrightBox):
    """BrightBox with a mask: the tile's bright pixels (probability 0.9) over the whole tile;
    the larger the box, the higher its score (a tile that sees the whole object is surest)."""

    def forward(self, images):
        out = super().forward(images)
        for o, im in zip(out, images):
            o["masks"] = (im[0] > 0.5).float()[None, None].repeat(len(o["boxes"]), 1, 1, 1) * 0.9
            o["scores"] = (o["boxes"][:, 2:] - o["boxes"][:, :2]).prod(1) / im[0].numel()
        return out


@pytest.fixture
def ring_scene(tmp_path):
    pixels = np.zeros((3, 150, 200), dtype=np.uint8)
    pixels[:, RING[1]:RING[3], RING[0]:RING[2]] = 255
    pixels[:, HOLE[1]:HOLE[3], HOLE[0]:HOLE[2]] = 0
    path = tmp_path / "ring_scene.tif"
    with rasterio.open(path, "w", driver="GTiff", width=200, height=150, count=3, dtype="uint8", crs="EPSG:32617",
                       transform=from_origin(400000.0, 3300000.0, 0.1, 0.1)) as dst:
        dst.write(pixels)
    return path, pixels[0] > 0


def test_masks_cut_by_tiles_merge_back_into_the_whole_object(ring_scene, tmp_path):
    from pycocotools import mask as mask_utils

    path, truth = ring_scene
    settings = SliceSettings(size=(64, 64), overlap=0.25, batch_size=3, method="greedy_nmm", match="ios")
    pred = sliced_predict(BrightMask(), path, settings, torch.device("cpu"))
    assert pred.boxes.tolist() == [list(map(float, RING))] and len(pred.masks) == 1
    records = coco_records(pred, 3, LabelMap((7,), ("tree",)))
    assert len(records["segm"]) == len(records["bbox"]) == 1
    rle = records["segm"][0]["segmentation"]
    assert rle["size"] == [150, 200] and np.array_equal(mask_utils.decode(rle).astype(bool), truth)
    assert sliced_predict(BrightBox(), path, settings, torch.device("cpu")).masks is None

    # GeoJSON: one MultiPolygon (its hole kept) whose area is the object's pixels at 0.1 m (0.01 m^2 each)
    import shapely

    write_geojson(tmp_path / "masks.geojson", pred, LabelMap((7,), ("tree",)))
    feature = json.loads((tmp_path / "masks.geojson").read_text())["features"][0]
    shape = shapely.geometry.shape(feature["geometry"])
    assert feature["geometry"]["type"] == "MultiPolygon" and feature["properties"]["mask_pixels"] == truth.sum()
    assert truth.sum() == 40 * 40 - 16 * 16 and len(shape.geoms) == 1 and len(shape.geoms[0].interiors) == 1
    assert shape.area == pytest.approx(truth.sum() * 0.01) and shape.bounds == pytest.approx(
        (400005.2, 3299990.6, 400009.2, 3299994.6))


def test_nms_keeps_the_kept_boxes_mask_and_an_empty_mask_is_outlined_by_its_box(ring_scene, tmp_path):
    from pycocotools import mask as mask_utils

    path, truth = ring_scene

    class FaintMask(BrightMask):
        def forward(self, images):
            out = super().forward(images)
            for o in out:
                o["masks"] = o["masks"] * 0.5  # 0.45: below the threshold everywhere
            return out

    settings = SliceSettings(size=(64, 64), overlap=0.25, method="nms", match="iou", threshold=0.5)
    pred = sliced_predict(BrightMask(), path, settings, torch.device("cpu"))
    for box, mask in zip(pred.boxes.tolist(), pred.masks):  # each mask is its own tile's piece
        assert [mask.x0, mask.y0, mask.x0 + mask.width, mask.y0 + mask.height] == box
    faint = sliced_predict(FaintMask(), path, settings, torch.device("cpu"))
    assert all(m is None for m in faint.masks)
    label_map = LabelMap((7,), ("tree",))
    write_geojson(tmp_path / "faint.geojson", faint, label_map, wgs84=True)
    features = json.loads((tmp_path / "faint.geojson").read_text())["features"]
    assert all(f["properties"]["mask_pixels"] == 0 and f["geometry"]["type"] == "MultiPolygon" for f in features)
    empty = coco_records(faint, 1, label_map)["segm"][0]["segmentation"]
    zeros = mask_utils.encode(np.zeros((150, 200), dtype=np.uint8, order="F"))["counts"].decode("ascii")
    assert empty["size"] == [150, 200] and empty["counts"] == zeros  # as pycocotools encodes the empty scene


def test_mask_geopackage_and_wgs84_read_back(ring_scene, tmp_path):
    pyogrio = needs_extra("pyogrio", "geo")
    import shapely
    from rasterio.warp import transform_geom

    from detimb.inference.geo import write_geopackage

    path, truth = ring_scene
    pred = sliced_predict(BrightMask(), path, SliceSettings(size=(64, 64), overlap=0.25), torch.device("cpu"))
    label_map = LabelMap((7,), ("tree",))
    write_geojson(tmp_path / "native.geojson", pred, label_map)
    write_geojson(tmp_path / "wgs84.geojson", pred, label_map, wgs84=True)
    write_geopackage(tmp_path / "masks.gpkg", pred, label_map, "ring_scene.tif")
    native = json.loads((tmp_path / "native.geojson").read_text())["features"]
    meta, _, geometry, fields = pyogrio.raw.read(str(tmp_path / "masks.gpkg"), layer="detections")
    assert meta["geometry_type"] == "MultiPolygon" and meta["crs"] == "EPSG:32617"
    assert dict(zip(meta["fields"], fields))["mask_pixels"].tolist() == [truth.sum()]
    assert shapely.from_wkb(geometry[0]).equals(shapely.geometry.shape(native[0]["geometry"]))
    want = transform_geom("EPSG:32617", "EPSG:4326", native[0]["geometry"])["coordinates"]
    got = json.loads((tmp_path / "wgs84.geojson").read_text())["features"][0]["geometry"]["coordinates"]
    assert len(got) == len(want)
    for ours, theirs in zip(got, want):
        for ring_ours, ring_theirs in zip(ours, theirs):
            assert np.allclose(np.array(ring_ours), np.array(ring_theirs), atol=1e-9, rtol=0)


def test_infer_cli_writes_segm_results_for_mask_rcnn(tiny_config, tmp_path, ring_scene, capsys):
    from pycocotools.coco import COCO

    path, _ = ring_scene
    cfg = tiny_config("mask_rcnn", model={"roi_head": {"score_thresh": 0.0}},
                      train={"schedule": {"max_iters": 1}, "eval_interval": 100})
    Trainer(cfg, tmp_path / "run", progress=False).train()
    code = infer.main(["--config", str(tmp_path / "run" / "config.yaml"), "--checkpoint",
                       str(tmp_path / "run" / "last.pth"), "--images", str(path), "--out", str(tmp_path / "preds"),
                       "--tile", "64", "--gpkg", "--mask-thr", "0.3"])
    assert code == 0 and "whose mask is empty at 0.3" in capsys.readouterr().out
    boxes = json.loads((tmp_path / "preds" / "results_bbox.json").read_text())
    segm = json.loads((tmp_path / "preds" / "results_segm.json").read_text())
    assert len(segm) == len(boxes) > 0 and all(r["segmentation"]["size"] == [150, 200] for r in segm)
    gt = COCO()  # pycocotools reads the results against a ground truth of the scene's size
    gt.dataset = {"images": [{"id": 1, "width": 200, "height": 150}], "categories": [{"id": 1}], "annotations": []}
    gt.createIndex()
    for r in segm:
        r["category_id"] = 1
    assert len(gt.loadRes(segm).anns) == len(segm)
    with pytest.raises(SystemExit):
        infer.main(["--config", "x", "--checkpoint", "y", "--images", "z", "--out", "o", "--mask-thr", "1"])
    assert "--mask-thr must be in [0, 1), got 1.0" in capsys.readouterr().err
    for flag, value in (("--max-draw", "-1"), ("--draw-max-side", "0"), ("--workers", "0"), ("--threads", "0")):
        with pytest.raises(SystemExit):
            infer.main(["--config", "x", "--checkpoint", "y", "--images", "z", "--out", "o", flag, value])
        assert f"{flag} must be an integer >= 1, got {value}" in capsys.readouterr().err


def test_overview_masks_stay_inside_the_scene(tmp_path):
    # a 150 x 100 scene read as a 33 x 22 overview: scaled back (x 150/33, 100/22) and rounded
    # up, the mask of an object at the bottom-right corner reaches a pixel past the scene's
    # edge in float (22 * (100 / 22) > 100); it is cut to the scene
    pixels = np.zeros((3, 100, 150), dtype=np.uint8)
    pixels[:, 60:, 110:] = 255
    path = tmp_path / "corner.tif"
    with rasterio.open(path, "w", driver="GTiff", width=150, height=100, count=3, dtype="uint8") as dst:
        dst.write(pixels)
    settings = SliceSettings(size=(64, 64), overlap=0.25, full_image=True, full_image_side=33, method="nms",
                             match="iou", threshold=0.99, class_agnostic=True)
    pred = sliced_predict(BrightMask(), path, settings, torch.device("cpu"))
    assert any(m.x0 + m.width == 150 and m.y0 + m.height == 100 for m in pred.masks)
    assert all(m.x0 + m.width <= 150 and m.y0 + m.height <= 100 for m in pred.masks)
    segm = coco_records(pred, 1, LabelMap((7,), ("tree",)))["segm"]
    assert len(segm) == len(pred.boxes) and all(r["segmentation"]["size"] == [100, 150] for r in segm)


def test_the_python_api_runs_a_scene_sliced_and_gives_map_features(scene):
    from detimb.api import Predictor
    from detimb.errors import InputError, OptionError

    predictor = Predictor(BrightBox(), LabelMap((7,), ("tree",)), device="cpu", score_threshold=0.5)
    pred = predictor.predict_scene(scene, tile=64, overlap=0.25, batch_size=3)
    assert pred.tiles == 12 and sorted(map(tuple, pred.boxes.tolist())) == [tuple(map(float, s)) for s in SQUARES]
    features = predictor.scene_features(pred)
    assert {f["properties"]["label"] for f in features} == {"tree"}
    assert {f["properties"]["category_id"] for f in features} == {7}
    ring = min((f["geometry"]["coordinates"][0] for f in features), key=lambda r: r[0][0])
    assert ring[0] == pytest.approx([400001.0, 3299998.8])  # pixel (10, 12) on the 0.1 m grid
    lonlat = predictor.scene_features(pred, wgs84=True)[0]["geometry"]["coordinates"][0][0]
    assert -180 <= lonlat[0] <= 180 and -90 <= lonlat[1] <= 90
    with pytest.raises(OptionError, match="overlap 64 must be >= 0 and smaller than the tile"):
        predictor.predict_scene(scene, tile=64, overlap=64)
    with pytest.raises(InputError, match="merge must be one of"):
        predictor.predict_scene(scene, merge="union")
    with pytest.raises(OptionError, match=r"batch_size \(--batch-size\) must be an integer >= 1, got 0"):
        predictor.predict_scene(scene, tile=64, batch_size=0)


@pytest.mark.parametrize("field,value,message", [
    ("batch_size", 0, "batch_size (--batch-size) must be an integer >= 1"),
    ("score_threshold", 1.0, "score_threshold (--score-thr) must be in [0, 1): a score must be able to pass it"),
    ("score_threshold", -0.1, "score_threshold (--score-thr)"),
    ("threshold", 1.5, "threshold (--match-thr) must be in [0, 1]"),
    ("mask_threshold", 1.0, "mask_threshold (--mask-thr)"),
    ("full_image_side", 0, "full_image_side must be an integer >= 1"),
    ("prefetch", -1, "prefetch must be an integer >= 0"),
])
def test_slice_settings_outside_their_ranges_are_named(field, value, message):
    from detimb.errors import OptionError

    with pytest.raises(OptionError, match=re.escape(message)):
        SliceSettings(size=(64, 64), **{field: value})


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_a_scene_stored_as_another_type_gives_the_same_detections(tmp_path, dtype):
    """The same 0-255 pixels (background 100, squares 220) as uint8, uint16 and float32:
    an RGB model reads each on the 8-bit scale (before: uint16 read near black, no box;
    float32 read as 100, one box per tile). Values past 255 are refused by name."""
    pixels = np.full((3, 150, 200), 100, dtype=np.uint8)
    for x0, y0, x1, y1 in SQUARES:
        pixels[:, y0:y1, x0:x1] = 220
    paths = {}
    for kind, values in (("uint8", pixels), (dtype, pixels.astype(dtype))):
        paths[kind] = tmp_path / f"{kind}.tif"
        with rasterio.open(paths[kind], "w", driver="GTiff", width=200, height=150, count=3, dtype=kind) as dst:
            dst.write(values)
    settings = SliceSettings(size=(64, 64), overlap=0.25)
    want, got = (sliced_predict(BrightBox(), paths[k], settings, torch.device("cpu")) for k in ("uint8", dtype))
    assert sorted(map(tuple, want.boxes.tolist())) == [tuple(map(float, s)) for s in SQUARES]
    assert torch.equal(want.boxes, got.boxes) and torch.equal(want.scores, got.scores)
    bright = pixels.astype(dtype)
    bright[0, 0, 0] = 4095
    with rasterio.open(tmp_path / "deep.tif", "w", driver="GTiff", width=200, height=150, count=3, dtype=dtype) as dst:
        dst.write(bright)
    with pytest.raises(DatasetError, match=rf"deep.tif: {dtype} values span 100 to 4095, outside the 0-255"):
        sliced_predict(BrightBox(), tmp_path / "deep.tif", settings, torch.device("cpu"))
