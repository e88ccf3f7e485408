"""The converters as a careless user meets them: every defect is a named error (file and
line, and the fix) or a counted repair the console reports; nothing detimb's own validator
would refuse is written; inputs stay byte-identical and nothing is left on refusal."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from detimb.cli import convert
from detimb.data.coco_validate import validate_coco


def image(path: Path, width: int = 100, height: int = 50) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((height, width, 3), dtype=np.uint8)).save(path)


def tree_hash(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


@pytest.fixture
def yolo(tmp_path: Path) -> Path:
    root = tmp_path / "in"
    image(root / "images/a.png")
    (root / "labels").mkdir()
    (root / "labels/a.txt").write_text("1 0.5 0.5 0.2 0.2\n")
    (root / "classes.txt").write_text("cat\ndog\n")
    return root


def run_yolo(root: Path, out: Path, labels: str = "labels", classes: str = "classes.txt") -> int:
    return convert.main(["yolo2coco", "--images", str(root / "images"), "--labels", str(root / labels),
                         "--classes", str(root / classes), "--out", str(out)])


YOLO_DEFECTS = [
    ("class_nan", "nan 0.5 0.5 0.2 0.2", "a.txt:2: 'nan' is not a finite number"),
    ("coordinate_inf", "0 0.5 inf 0.2 0.2", "a.txt:2: 'inf' is not a finite number"),
    ("not_utf8", b"0 0.5 0.5 0.2 0.2 \xff\xfe\n", "a.txt: not UTF-8 text"),
]


@pytest.mark.parametrize("name,line,match", YOLO_DEFECTS, ids=[d[0] for d in YOLO_DEFECTS])
def test_yolo_label_defects_are_named(yolo, tmp_path, capsys, name, line, match):
    label = yolo / "labels/a.txt"
    label.write_bytes(line if isinstance(line, bytes) else ("1 0.5 0.5 0.2 0.2\n" + line + "\n").encode())
    before = tree_hash(yolo)
    assert run_yolo(yolo, tmp_path / "out/ann.json") != 0
    assert match in capsys.readouterr().err
    assert tree_hash(yolo) == before and not (tmp_path / "out").exists()


def test_a_mistyped_labels_folder_is_refused_not_converted_to_nothing(yolo, tmp_path, capsys):
    assert run_yolo(yolo, tmp_path / "ann.json", labels="lables") != 0
    assert "lables: --labels is not a folder" in capsys.readouterr().err
    (yolo / "empty").mkdir()
    assert run_yolo(yolo, tmp_path / "ann.json", labels="empty") != 0
    assert "no .txt label files" in capsys.readouterr().err and not (tmp_path / "ann.json").exists()


def test_names_with_a_gap_are_refused(yolo, tmp_path, capsys):
    (yolo / "data.yaml").write_text("names: {0: square, 2: triangle}\n")
    assert run_yolo(yolo, tmp_path / "ann.json", classes="data.yaml") != 0
    assert "'names' indices [0, 2] are not 0..1 (missing [1])" in capsys.readouterr().err
    (yolo / "data.yaml").write_text("names: {1: dog, 0: cat}\n")  # out of order but complete: by index
    assert run_yolo(yolo, tmp_path / "ann.json", classes="data.yaml") == 0
    cats = json.loads((tmp_path / "ann.json").read_text())["categories"]
    assert [c["name"] for c in cats] == ["cat", "dog"]


@pytest.mark.parametrize("fmt", ["yolo", "dota"])
def test_zero_size_boxes_are_left_out_counted_and_the_output_validates(tmp_path, capsys, fmt):
    root, out = tmp_path / "in", tmp_path / "ann.json"
    image(root / "images/a.png")
    (root / "labels").mkdir(parents=True)
    if fmt == "yolo":
        (root / "labels/a.txt").write_text("0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.0 0.2\n")
        (root / "classes.txt").write_text("cat\n")
        args = ["yolo2coco", "--images", str(root / "images"), "--labels", str(root / "labels"), "--classes",
                str(root / "classes.txt")]
    else:
        (root / "labels/a.txt").write_text("10 10 20 10 20 20 10 20 cat 0\n30 5 30 5 30 25 30 25 cat 0\n")
        args = ["dota2coco", "--images", str(root / "images"), "--labels", str(root / "labels")]
    before = tree_hash(root)
    assert convert.main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"left out: 1 boxes with zero width or height left out (first: {root / 'labels' / 'a.txt'}:2)" in printed
    records = validate_coco(out, root / "images", out_of_bounds="error")
    assert sum(len(a) for a in records.annotations_by_image.values()) == 1
    assert tree_hash(root) == before


def test_voc_non_finite_coordinates_are_named(tmp_path, capsys):
    (tmp_path / "xml").mkdir()
    (tmp_path / "xml/a.xml").write_text("<annotation><filename>a.png</filename><size><width>100</width><height>50"
                                        "</height></size><object><name>cat</name><bndbox><xmin>nan</xmin><ymin>5"
                                        "</ymin><xmax>8</xmax><ymax>9</ymax></bndbox></object></annotation>")
    assert convert.main(["voc2coco", "--xml", str(tmp_path / "xml"), "--out", str(tmp_path / "ann.json")]) != 0
    assert "a.xml: <xmin>: 'nan' is not a finite number" in capsys.readouterr().err
    assert not (tmp_path / "ann.json").exists()


@pytest.fixture
def coco_file(tmp_path: Path):
    def make(images: list[dict], annotations: list[dict]) -> Path:
        path = tmp_path / "coco.json"
        path.write_text(json.dumps({"images": images, "annotations": annotations,
                                    "categories": [{"id": 1, "name": "cat"}]}))
        return path
    return make


def ann(i: int, image_id: int, bbox: list, **extra) -> dict:
    return {"id": i, "image_id": image_id, "category_id": 1, "bbox": bbox, "iscrowd": 0, **extra}


IMG = {"width": 100, "height": 50}
COCO_DEFECTS = [
    ("iscrowd_string", [ann(1, 1, [1, 1, 5, 5], iscrowd="0")], "iscrowd '0' (str)"),
    ("nan_box", [ann(1, 1, [float("nan"), 1, 5, 5])], "is not 4 finite numbers"),
    ("unknown_image", [ann(1, 7, [1, 1, 5, 5])], "refers to image_id 7"),
    ("unknown_category", [{**ann(1, 1, [1, 1, 5, 5]), "category_id": 9}], "has category_id 9"),
]


@pytest.mark.parametrize("name,annotations,match", COCO_DEFECTS, ids=[d[0] for d in COCO_DEFECTS])
def test_coco2yolo_validates_its_input(coco_file, tmp_path, capsys, name, annotations, match):
    path = coco_file([{"id": 1, "file_name": "a.png", **IMG}], annotations)
    assert convert.main(["coco2yolo", "--coco", str(path), "--out", str(tmp_path / "yolo")]) != 0
    assert match in capsys.readouterr().err and not (tmp_path / "yolo").exists()


def test_coco2yolo_keeps_folders_and_refuses_two_images_on_one_label(coco_file, tmp_path, capsys):
    images = [{"id": 1, "file_name": "a/x.png", **IMG}, {"id": 2, "file_name": "b/x.png", **IMG}]
    path = coco_file(images, [ann(1, 1, [10, 10, 20, 10]), ann(2, 2, [90, 40, 20, 20])])
    assert convert.main(["coco2yolo", "--coco", str(path), "--out", str(tmp_path / "yolo")]) == 0
    assert "1 boxes clipped to their image" in capsys.readouterr().out
    assert (tmp_path / "yolo/labels/a/x.txt").read_text() == "0 0.200000 0.300000 0.200000 0.200000\n"
    assert (tmp_path / "yolo/labels/b/x.txt").read_text() == "0 0.950000 0.900000 0.100000 0.200000\n"
    clash = coco_file([{"id": 1, "file_name": "x.png", **IMG}, {"id": 2, "file_name": "x.jpg", **IMG}], [])
    assert convert.main(["coco2yolo", "--coco", str(clash), "--out", str(tmp_path / "yolo2")]) != 0
    assert "'x.png' and 'x.jpg' would both write labels/x.txt" in capsys.readouterr().err
    escape = coco_file([{"id": 1, "file_name": "../../evil.png", **IMG}], [])
    assert convert.main(["coco2yolo", "--coco", str(escape), "--out", str(tmp_path / "yolo3")]) != 0
    assert "leaves the image folder" in capsys.readouterr().err


@pytest.fixture
def raster(tmp_path: Path) -> Path:
    import rasterio
    from rasterio.transform import from_origin

    path = tmp_path / "scene.tif"
    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=3, dtype="uint8", crs="EPSG:32617",
                       transform=from_origin(400000.0, 3300000.0, 1.0, 1.0)) as dst:
        dst.write(np.zeros((3, 64, 64), np.uint8))
    return path


LABEL_FILES = [("missing.geojson", None, "label file not found"),
               ("bytes.geojson", b"\xff\xfe{", "not UTF-8 text (byte 0:"),
               ("labels.csv", b"x,y\n1,2\n", "not JSON (line 1, column 1"),
               ("folder.geojson", "folder", "is a folder, not a label file")]


@pytest.mark.parametrize("name,content,match", LABEL_FILES, ids=[f[0] for f in LABEL_FILES])
def test_tile_names_a_label_file_it_cannot_read(tmp_path, capsys, raster, name, content, match):
    from detimb.cli import tile

    labels = tmp_path / name
    if content == "folder":
        labels.mkdir()
    elif content is not None:
        labels.write_bytes(content)
    assert tile.main(["--raster", str(raster), "--labels", str(labels), "--out", str(tmp_path / "tiles"),
                      "--size", "32"]) != 0
    err = capsys.readouterr().err
    assert f"{name}: {match}" in err and "Traceback" not in err and not (tmp_path / "tiles").exists()
