"""Tiling datasets and rasters: round trip, GeoTIFF transforms, GeoJSON labels, resume, merging to AP 1."""

import json
import re

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from detimb.cli import tile as tile_cli
from detimb.data.coco import coco_api
from detimb.data.coco_validate import read_coco_json, validate_coco
from detimb.data.label_map import LabelMap
from detimb.data.tiling import Scene, TileOptions, run_tiling, tile_scene
from detimb.data.tiling.raster import apply_affine
from detimb.evaluation.coco_eval import evaluate_coco
from detimb.inference.merge import merge_predictions
from detimb.errors import DatasetError

# 64 px images, tiles of 40 with 24 px overlap: origins 0, 16, 24 on each axis, so every
# object of the tiny dataset (at most 24 px) lies whole in some tile
TILING = ["--size", "40", "--overlap", "24", "--no-progress"]


@pytest.fixture(scope="module")
def tiled(tiny_shapes, tmp_path_factory):
    out = tmp_path_factory.mktemp("tiles") / "out"
    code = tile_cli.main(["--coco", str(tiny_shapes / "annotations/val.json"), "--images", str(tiny_shapes / "val"),
                          "--out", str(out), "--workers", "2", *TILING])
    assert code == 0
    return out


def test_tiles_form_a_valid_coco_dataset_with_a_tile_index(tiled, tiny_shapes):
    data = read_coco_json(tiled / "annotations.json")
    n_src = len(read_coco_json(tiny_shapes / "annotations/val.json")["images"])
    assert len(data["images"]) == 9 * n_src and len(data["parents"]) == n_src
    records = validate_coco(tiled / "annotations.json", tiled / "images")  # every tile file exists, boxes inside
    assert records.clipped_boxes == 0 and records.dropped_boxes == 0
    first = data["images"][0]
    assert first["tile"] == {"parent_id": data["parents"][0]["id"], "parent_file": data["parents"][0]["file_name"],
                             "x0": 0, "y0": 0, "transform": None, "crs": None}
    assert [im["id"] for im in data["images"]] == list(range(1, len(data["images"]) + 1))


def test_shifting_tiles_back_reproduces_every_original_box(tiled, tiny_shapes):
    source = read_coco_json(tiny_shapes / "annotations/val.json")
    data = read_coco_json(tiled / "annotations.json")
    tiles = {im["id"]: im["tile"] for im in data["images"]}
    back: dict[int, list] = {}
    for a in data["annotations"]:
        t = tiles[a["image_id"]]
        x, y, w, h = a["bbox"]
        back.setdefault(a["parent_annotation_id"], []).append([x + t["x0"], y + t["y0"], w, h])
    for a in source["annotations"]:
        assert any(np.allclose(b, a["bbox"], atol=0.01) for b in back[a["id"]]), a


def test_ground_truth_as_predictions_merges_back_to_ap_one(tiled, tiny_shapes):
    """Tile, take every tile annotation as a detection, shift back, merge (greedy NMM, IoS): AP 1."""
    source = read_coco_json(tiny_shapes / "annotations/val.json")
    data = read_coco_json(tiled / "annotations.json")
    tiles = {im["id"]: im["tile"] for im in data["images"]}
    label_map = LabelMap.from_categories(source["categories"])
    results = []
    for parent in data["parents"]:
        anns = [a for a in data["annotations"] if tiles[a["image_id"]]["parent_id"] == parent["id"]]
        if not anns:
            continue
        boxes = torch.tensor([[a["bbox"][0] + tiles[a["image_id"]]["x0"], a["bbox"][1] + tiles[a["image_id"]]["y0"],
                               a["bbox"][0] + a["bbox"][2] + tiles[a["image_id"]]["x0"],
                               a["bbox"][1] + a["bbox"][3] + tiles[a["image_id"]]["y0"]] for a in anns])
        labels = torch.tensor([label_map.label(a["category_id"]) for a in anns])
        # scores by size: the whole box outranks its cut pieces, which it then absorbs
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        merged, scores, labs = merge_predictions(boxes, areas / areas.max(), labels, "greedy_nmm", "ios", 0.5)
        for (x0, y0, x1, y1), s, lab in zip(merged.tolist(), scores.tolist(), labs.tolist()):
            results.append({"image_id": parent["id"], "category_id": label_map.coco_id(lab), "score": s,
                            "bbox": [x0, y0, x1 - x0, y1 - y0]})
    report = evaluate_coco(coco_api(source), results, "bbox", label_map)
    assert report["stats"]["mAP"] == pytest.approx(1.0)
    assert len(results) == len(source["annotations"])


def test_empty_tiles_keep_ratio_is_seeded(tiny_shapes, tmp_path):
    args = ["--coco", str(tiny_shapes / "annotations/val.json"), "--images", str(tiny_shapes / "val"), *TILING,
            "--empty-keep", "0.0"]
    assert tile_cli.main([*args, "--out", str(tmp_path / "a")]) == 0
    data = read_coco_json(tmp_path / "a" / "annotations.json")
    assert {a["image_id"] for a in data["annotations"]} == {im["id"] for im in data["images"]}
    assert data["summary"]["dropped_empty"] == data["summary"]["tiles_in_grid"] - len(data["images"]) > 0


def test_empty_ratio_hits_its_share_of_the_kept_tiles(tiny_shapes, tmp_path):
    base = ["--coco", str(tiny_shapes / "annotations/val.json"), "--images", str(tiny_shapes / "val"), *TILING]
    assert tile_cli.main([*base, "--out", str(tmp_path / "all")]) == 0
    everything = read_coco_json(tmp_path / "all" / "annotations.json")
    with_anns = {a["image_id"] for a in everything["annotations"]}
    empty_total = len(everything["images"]) - len(with_anns)
    for ratio in (0.02, 0.05):
        out = tmp_path / f"r{ratio}"
        assert tile_cli.main([*base, "--empty-ratio", str(ratio), "--out", str(out)]) == 0
        data = read_coco_json(out / "annotations.json")
        kept_empty = len(data["images"]) - len({a["image_id"] for a in data["annotations"]})
        # round(R A / (1 - R)) empty tiles for A tiles with annotations, by hand
        want = min(empty_total, round(ratio * len(with_anns) / (1 - ratio)))
        assert kept_empty == want and 0 < want < empty_total
        assert abs(kept_empty / len(data["images"]) - ratio) < 0.5 / len(data["images"]) + 1e-9
    assert tile_cli.main([*base, "--empty-ratio", "0.1", "--empty-keep", "0.5", "--out", str(tmp_path / "x")]) == 2


def test_parallel_tile_writes_give_the_same_files(tiny_shapes, tmp_path):
    base = ["--coco", str(tiny_shapes / "annotations/val.json"), "--images", str(tiny_shapes / "val"), *TILING]
    assert tile_cli.main([*base, "--write-threads", "1", "--out", str(tmp_path / "one")]) == 0
    assert tile_cli.main([*base, "--write-threads", "4", "--out", str(tmp_path / "four")]) == 0
    one = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one" / "images").rglob("*.png"))
    four = sorted(p.relative_to(tmp_path / "four") for p in (tmp_path / "four" / "images").rglob("*.png"))
    assert one == four and one
    assert all((tmp_path / "one" / p).read_bytes() == (tmp_path / "four" / p).read_bytes() for p in one)
    a, b = (read_coco_json(tmp_path / d / "annotations.json") for d in ("one", "four"))
    assert a["images"] == b["images"] and a["annotations"] == b["annotations"]


def test_an_interrupted_run_completes_without_duplicates(tiny_shapes, tmp_path):
    records = validate_coco(tiny_shapes / "annotations/val.json", tiny_shapes / "val")
    scenes = [Scene(i, str(tiny_shapes / "val" / im["file_name"]), dict(im), records.annotations_by_image[im["id"]])
              for i, im in enumerate(records.images)]
    options = TileOptions(size=(40, 40), overlap=24.0)
    straight = run_tiling(scenes, records.categories, options, tmp_path / "straight", progress=False)
    # "interrupted": the first three scenes' parts (and their tiles) exist, nothing else
    (tmp_path / "part" / ".parts").mkdir(parents=True)
    for s in scenes[:3]:
        tile_scene(s, options, tmp_path / "part")
    resumed = run_tiling(scenes, records.categories, options, tmp_path / "part", progress=False)
    assert resumed == straight
    a = json.loads((tmp_path / "straight" / "annotations.json").read_text())
    b = json.loads((tmp_path / "part" / "annotations.json").read_text())
    assert a["images"] == b["images"] and a["annotations"] == b["annotations"]
    assert not (tmp_path / "part" / ".parts").exists()
    # a finished job reruns as a no-op; other settings are refused
    assert run_tiling(scenes, records.categories, options, tmp_path / "part", progress=False) == straight
    with pytest.raises(DatasetError, match="other settings"):
        run_tiling(scenes, records.categories, TileOptions(size=(32, 32)), tmp_path / "part", progress=False)


def test_output_inside_the_input_is_refused(tiny_shapes, capsys):
    code = tile_cli.main(["--coco", str(tiny_shapes / "annotations/val.json"), "--images", str(tiny_shapes / "val"),
                          "--out", str(tiny_shapes / "val" / "tiles"), *TILING])
    assert code == 2 and "overlaps the input" in capsys.readouterr().err


def make_geotiff(path, width=100, height=80, bands=3, dtype="uint16", nodata=None):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 4000, (bands, height, width)).astype(dtype)
    transform = from_origin(500000.0, 4100000.0, 0.5, 0.5)  # 0.5 m pixels, UTM
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=bands, dtype=dtype,
                       crs="EPSG:32617", transform=transform, nodata=nodata) as dst:
        dst.write(pixels)
    return pixels, transform


def test_geotiff_tiles_carry_their_own_transform_and_crs(tmp_path):
    pixels, transform = make_geotiff(tmp_path / "scene.tif")
    assert tile_cli.main(["--raster", str(tmp_path / "scene.tif"), "--out", str(tmp_path / "t"), "--size", "32",
                          "--overlap", "0", "--edge", "pad", "--no-progress"]) == 0
    data = read_coco_json(tmp_path / "t" / "annotations.json")
    assert len(data["images"]) == 4 * 3  # 100 / 32 -> 4 columns (last padded), 80 / 32 -> 3 rows
    im = next(i for i in data["images"] if (i["tile"]["x0"], i["tile"]["y0"]) == (64, 32))
    with rasterio.open(tmp_path / "t" / "images" / im["file_name"]) as t:
        # pixel (0, 0) of this tile is pixel (64, 32) of the scene: 500000 + 64 * 0.5, 4100000 - 32 * 0.5
        assert apply_affine(t.transform, 0, 0) == pytest.approx((500032.0, 4099984.0))
        assert t.crs.to_string() == "EPSG:32617" and t.dtypes[0] == "uint16" and t.count == 3
        assert (t.read() == pixels[:, 32:64, 64:96]).all()
    assert im["tile"]["crs"] == "EPSG:32617" and im["tile"]["transform"][2] == pytest.approx(500032.0)


def test_dtype_conversion_and_png_output(tmp_path):
    pixels, _ = make_geotiff(tmp_path / "scene.tif")
    assert tile_cli.main(["--raster", str(tmp_path / "scene.tif"), "--out", str(tmp_path / "t"), "--size", "40",
                          "--overlap", "0", "--format", "png", "--dtype", "uint8", "--scale", "0", "4000",
                          "--no-progress"]) == 0
    import cv2
    tile = cv2.cvtColor(cv2.imread(str(tmp_path / "t" / "images" / "scene_x40_y0.png")), cv2.COLOR_BGR2RGB)
    want = np.clip(np.rint(pixels[:, :40, 40:80] / 4000 * 255), 0, 255).astype(np.uint8)
    assert (np.moveaxis(tile, -1, 0) == want).all()
    # PNG cannot hold uint16 x 3 bands? it can; 4 bands it cannot: the error names the fix
    make_geotiff(tmp_path / "four.tif", bands=4, dtype="uint8")
    assert tile_cli.main(["--raster", str(tmp_path / "four.tif"), "--out", str(tmp_path / "t4"), "--format", "png",
                          "--no-progress"]) == 2


def test_nodata_tiles_are_dropped(tmp_path):
    path = tmp_path / "scene.tif"
    make_geotiff(path, nodata=0)
    with rasterio.open(path, "r+") as d:
        d.write(np.zeros((3, 80, 50), dtype="uint16"), window=rasterio.windows.Window(0, 0, 50, 80))
    assert tile_cli.main(["--raster", str(path), "--out", str(tmp_path / "t"), "--size", "40", "--overlap", "0",
                          "--max-nodata", "0.5", "--no-progress"]) == 0
    data = read_coco_json(tmp_path / "t" / "annotations.json")
    assert sorted(i["tile"]["x0"] for i in data["images"]) == [40, 40, 60, 60]  # x0 = 0 tiles are all nodata
    assert data["summary"]["dropped_nodata"] == 2


def test_geojson_labels_in_map_coordinates(tmp_path):
    _, transform = make_geotiff(tmp_path / "scene.tif")
    # a 10 x 6 pixel rectangle at pixel (20, 30): map x 500010..500015, y 4099985..4099982
    ring = [[500010.0, 4099985.0], [500015.0, 4099985.0], [500015.0, 4099982.0], [500010.0, 4099982.0],
            [500010.0, 4099985.0]]
    geo = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"species": "oak"}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]}
    (tmp_path / "trees.geojson").write_text(json.dumps(geo))
    assert tile_cli.main(["--raster", str(tmp_path / "scene.tif"), "--labels", str(tmp_path / "trees.geojson"),
                          "--label-field", "species", "--out", str(tmp_path / "t"), "--size", "100", "80",
                          "--no-progress"]) == 0
    data = read_coco_json(tmp_path / "t" / "annotations.json")
    assert data["categories"] == [{"id": 1, "name": "oak"}]
    assert data["annotations"][0]["bbox"] == pytest.approx([20.0, 30.0, 10.0, 6.0])
    assert tile_cli.main(["--raster", str(tmp_path / "scene.tif"), "--labels", str(tmp_path / "trees.geojson"),
                          "--out", str(tmp_path / "u"), "--no-progress"]) == 2  # no 'label' property


def _tile_labels(tmp_path, name: str, geo: dict) -> list[list[float]]:
    (tmp_path / f"{name}.geojson").write_text(json.dumps(geo))
    assert tile_cli.main(["--raster", str(tmp_path / "scene.tif"), "--labels", str(tmp_path / f"{name}.geojson"),
                          "--label-field", "species", "--out", str(tmp_path / name), "--size", "100", "80",
                          "--no-progress"]) == 0
    return [a["bbox"] for a in read_coco_json(tmp_path / name / "annotations.json")["annotations"]]


def test_labels_in_any_crs_tile_to_the_same_pixels(tmp_path):
    from rasterio.warp import transform_geom

    make_geotiff(tmp_path / "scene.tif")
    rings = [[[500010.0, 4099985.0], [500015.0, 4099985.0], [500015.0, 4099982.0], [500010.0, 4099982.0],
              [500010.0, 4099985.0]],
             [[500030.5, 4099990.25], [500041.0, 4099990.25], [500041.0, 4099981.0], [500030.5, 4099990.25]]]
    features = [{"type": "Feature", "properties": {"species": "oak"},
                 "geometry": {"type": "Polygon", "coordinates": [r]}} for r in rings]
    utm = {"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "EPSG:32617"}},
           "features": features}
    lonlat = {"type": "FeatureCollection",  # RFC 7946: no crs member, longitude/latitude
              "features": [{**f, "geometry": transform_geom("EPSG:32617", "OGC:CRS84", f["geometry"])}
                           for f in features]}
    assert abs(lonlat["features"][0]["geometry"]["coordinates"][0][0][0] + 81) < 1  # near 81 W: lon/lat indeed
    want = _tile_labels(tmp_path, "utm", utm)
    assert want[0] == pytest.approx([20.0, 30.0, 10.0, 6.0])
    got = _tile_labels(tmp_path, "wgs84", lonlat)
    assert np.abs(np.array(got) - np.array(want)).max() < 1e-6


def test_labels_of_another_place_and_null_geometries_are_named(tmp_path, capsys):
    make_geotiff(tmp_path / "scene.tif")
    paris = [[2.35, 48.85], [2.36, 48.85], [2.36, 48.86], [2.35, 48.85]]
    elsewhere = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"label": "oak"}, "geometry": {"type": "Polygon", "coordinates": [paris]}}]}
    (tmp_path / "elsewhere.geojson").write_text(json.dumps(elsewhere))
    args = ["--raster", str(tmp_path / "scene.tif"), "--out", str(tmp_path / "t"), "--no-progress", "--labels"]
    assert tile_cli.main([*args, str(tmp_path / "elsewhere.geojson")]) == 2
    err = capsys.readouterr().err
    assert "none of its 1 features falls on the raster" in err and "OGC:CRS84" in err and "100 x 0 to 80" in err
    null = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {"label": "oak"},
                                                       "geometry": None}]}
    (tmp_path / "null.geojson").write_text(json.dumps(null))
    assert tile_cli.main([*args, str(tmp_path / "null.geojson")]) == 2
    assert "feature 0 has no geometry" in capsys.readouterr().err
    assert not (tmp_path / "t" / "annotations.json").exists()


@pytest.mark.parametrize("options,message", [
    ({"png_compression": 12}, "png_compression must be 0..9"),
    ({"jpeg_quality": 200}, "jpeg_quality must be 0..100"),
    ({"max_nodata": 2.0}, "max_nodata must be in [0, 1]"),
    ({"scale": (5.0, 1.0)}, "scale must be (min, max) with min < max, got (5.0, 1.0)"),
    ({"scale": (0.0, float("nan"))}, "scale must be (min, max)"),
    ({"seed": -1}, "seed must be an integer >= 0"),
])
def test_options_outside_their_ranges_are_named_not_clamped(options, message):
    from detimb.errors import OptionError

    with pytest.raises(OptionError, match=re.escape(message)):
        TileOptions(size=(32, 32), **options)


def test_the_tool_names_an_inverted_scale_before_writing(tiny_shapes, tmp_path, capsys):
    code = tile_cli.main(["--coco", str(tiny_shapes / "annotations/val.json"), "--images", str(tiny_shapes / "val"),
                          "--out", str(tmp_path / "t"), "--size", "32", "--scale", "5", "1", "--no-progress"])
    assert code == 2 and "scale must be (min, max) with min < max" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()
