"""Converters on hand-made fixtures whose COCO output is written out by hand."""

import json

import numpy as np
import pytest
from PIL import Image

from detimb.cli import convert
from detimb.data.convert import coco_to_yolo, dota_to_coco, voc_to_coco, yolo_to_coco
from detimb.data.coco_validate import validate_coco_data
from detimb.errors import DatasetError


def image(path, width, height):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((height, width, 3), dtype=np.uint8)).save(path)


@pytest.fixture
def yolo(tmp_path):
    image(tmp_path / "images/a.png", 100, 50)
    image(tmp_path / "images/b.jpg", 40, 40)
    (tmp_path / "labels").mkdir()
    # a: a box of class 1 centred at (50, 25), 20 x 10 px; a triangle of class 0
    (tmp_path / "labels/a.txt").write_text("1 0.5 0.5 0.2 0.2\n0 0.1 0.2 0.3 0.2 0.2 0.6\n")
    (tmp_path / "classes.txt").write_text("cat\ndog\n")
    return tmp_path


def test_yolo_to_coco_by_hand(yolo):
    coco = yolo_to_coco(yolo / "images", yolo / "labels", yolo / "classes.txt").data
    assert coco["categories"] == [{"id": 1, "name": "cat", "supercategory": ""},
                                  {"id": 2, "name": "dog", "supercategory": ""}]
    assert coco["images"] == [{"id": 1, "file_name": "a.png", "width": 100, "height": 50},
                              {"id": 2, "file_name": "b.jpg", "width": 40, "height": 40}]
    box, tri = coco["annotations"]
    assert box == {"id": 1, "image_id": 1, "category_id": 2, "bbox": pytest.approx([40.0, 20.0, 20.0, 10.0]),
                   "area": pytest.approx(200.0), "iscrowd": 0}
    # triangle (10, 10), (30, 10), (20, 30): bbox 10..30 x 10..30, area 20 * 20 / 2
    assert tri["category_id"] == 1 and tri["bbox"] == pytest.approx([10.0, 10.0, 20.0, 20.0])
    assert tri["segmentation"] == [pytest.approx([10.0, 10.0, 30.0, 10.0, 20.0, 30.0])]
    assert tri["area"] == pytest.approx(200.0)


def test_coco_to_yolo_and_back(yolo, tmp_path):
    coco = yolo_to_coco(yolo / "images", yolo / "labels", yolo / "classes.txt").data
    coco["annotations"].append({"id": 3, "image_id": 2, "category_id": 1, "bbox": [0, 0, 4, 4], "area": 16,
                                "iscrowd": 1})
    counts = coco_to_yolo(validate_coco_data(coco, "ann.json", None), tmp_path / "out")
    assert counts == {"images": 2, "boxes": 2, "crowd_skipped": 1, "clipped_boxes": 0, "dropped_boxes": 0}
    assert (tmp_path / "out/classes.txt").read_text() == "cat\ndog\n"
    assert (tmp_path / "out/labels/a.txt").read_text().splitlines()[0] == "1 0.500000 0.500000 0.200000 0.200000"
    assert (tmp_path / "out/labels/b.txt").read_text() == ""
    back = yolo_to_coco(yolo / "images", tmp_path / "out/labels", tmp_path / "out/classes.txt").data
    assert [a["bbox"] for a in back["annotations"]] == [pytest.approx(a["bbox"], abs=1e-4)
                                                        for a in coco["annotations"][:2]]


@pytest.mark.parametrize("line,match", [("2 0.5 0.5 0.1 0.1", "class index 2 is outside 0..1"),
                                        ("0 0.5 1.5 0.1 0.1", r"normalised to \[0, 1\]"),
                                        ("0 0.5 0.5 0.1", "expected 'class cx cy w h'"),
                                        ("x 0.5 0.5 0.1 0.1", "'x' is not a number")])
def test_yolo_errors_name_the_file_and_line(yolo, line, match):
    (yolo / "labels/a.txt").write_text("1 0.5 0.5 0.2 0.2\n" + line + "\n")
    with pytest.raises(DatasetError, match=match) as err:
        yolo_to_coco(yolo / "images", yolo / "labels", yolo / "classes.txt")
    assert "a.txt:2" in str(err.value)


@pytest.mark.parametrize("name,text", [("classes.txt", "cat\ndog\ncat\n"), ("data.yaml", "names: [cat, dog, cat]\n")])
def test_a_class_list_that_repeats_a_name_is_refused(yolo, name, text):
    (yolo / name).write_text(text)
    with pytest.raises(DatasetError, match=rf"{name}: the class name\(s\) 'cat' appear more than once, at indices"
                                           r" \[0, 2\]"):
        yolo_to_coco(yolo / "images", yolo / "labels", yolo / name)


def test_yolo_label_without_image_is_named(yolo):
    (yolo / "labels/ghost.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(DatasetError, match="ghost.txt: no image named ghost"):
        yolo_to_coco(yolo / "images", yolo / "labels", yolo / "classes.txt")


VOC = """<annotation><filename>img1.jpg</filename><size><width>64</width><height>48</height><depth>3</depth></size>
<object><name>dog</name><difficult>0</difficult><bndbox><xmin>1</xmin><ymin>11</ymin><xmax>10</xmax><ymax>20</ymax>
</bndbox></object>
<object><name>cat</name><difficult>1</difficult><bndbox><xmin>5</xmin><ymin>5</ymin><xmax>8</xmax><ymax>9</ymax>
</bndbox></object></annotation>"""


@pytest.mark.parametrize("difficult,crowd", [("keep", [0, 0]), ("crowd", [0, 1]), ("skip", [0])])
def test_voc_to_coco_by_hand(tmp_path, difficult, crowd):
    (tmp_path / "xml").mkdir()
    (tmp_path / "xml/img1.xml").write_text(VOC)
    coco = voc_to_coco(tmp_path / "xml", difficult=difficult).data
    assert [c["name"] for c in coco["categories"]] == ["cat", "dog"]
    assert coco["images"] == [{"id": 1, "file_name": "img1.jpg", "width": 64, "height": 48}]
    # VOC's 1-based inclusive corners (1, 11)-(10, 20): x 0..10, y 10..20 (detectron2's convention)
    assert coco["annotations"][0]["bbox"] == [0.0, 10.0, 10.0, 10.0] and coco["annotations"][0]["category_id"] == 2
    assert [a["iscrowd"] for a in coco["annotations"]] == crowd
    if difficult != "skip":
        assert coco["annotations"][1]["bbox"] == [4.0, 4.0, 4.0, 5.0]


def test_voc_errors(tmp_path):
    (tmp_path / "xml").mkdir()
    (tmp_path / "xml/img1.xml").write_text(VOC)
    with pytest.raises(DatasetError, match=r"img1.xml: its image .*img1.jpg does not exist"):
        voc_to_coco(tmp_path / "xml", images=tmp_path / "images")
    with pytest.raises(DatasetError, match=r"classes \['dog'\] are not in the class list"):
        voc_to_coco(tmp_path / "xml", classes=["cat"])
    (tmp_path / "xml/img1.xml").write_text(VOC.replace("<xmin>1</xmin>", "<xmin>one</xmin>"))
    with pytest.raises(DatasetError, match="<xmin>: 'one' is not a number"):
        voc_to_coco(tmp_path / "xml")


def test_dota_to_coco_by_hand(tmp_path):
    image(tmp_path / "images/P0001.png", 200, 100)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels/P0001.txt").write_text("imagesource:GoogleEarth\ngsd:0.5\n"
                                               "10 0 20 10 10 20 0 10 plane 0\n"
                                               "50 50 90 50 90 70 50 70 ship 1\n")
    coco = dota_to_coco(tmp_path / "images", tmp_path / "labels").data
    assert [c["name"] for c in coco["categories"]] == ["plane", "ship"]
    diamond, rect = coco["annotations"]
    # the diamond (10,0) (20,10) (10,20) (0,10): bbox 0..20 x 0..20, area 200 (half the box)
    assert diamond["bbox"] == [0.0, 0.0, 20.0, 20.0] and diamond["area"] == pytest.approx(200.0)
    assert diamond["segmentation"] == [[10.0, 0.0, 20.0, 10.0, 10.0, 20.0, 0.0, 10.0]]
    assert rect["bbox"] == [50.0, 50.0, 40.0, 20.0] and rect["area"] == pytest.approx(800.0) and rect["iscrowd"] == 0
    assert len(dota_to_coco(tmp_path / "images", tmp_path / "labels", difficult="skip").data["annotations"]) == 1
    (tmp_path / "labels/P0002.txt").write_text("1 2 3 4 5 6 7 8 plane\n")
    with pytest.raises(DatasetError, match="P0002.txt: no image named P0002"):
        dota_to_coco(tmp_path / "images", tmp_path / "labels")


def test_cli_writes_coco_and_reports_errors(yolo, tmp_path, capsys):
    out = tmp_path / "out/ann.json"
    assert convert.main(["yolo2coco", "--images", str(yolo / "images"), "--labels", str(yolo / "labels"),
                         "--classes", str(yolo / "classes.txt"), "--out", str(out)]) == 0
    assert len(json.loads(out.read_text())["annotations"]) == 2
    (yolo / "labels/a.txt").write_text("7 0.5 0.5 0.2 0.2\n")
    assert convert.main(["yolo2coco", "--images", str(yolo / "images"), "--labels", str(yolo / "labels"),
                         "--classes", str(yolo / "classes.txt"), "--out", str(tmp_path / "bad.json")]) == 2
    assert "class index 7 is outside" in capsys.readouterr().err and not (tmp_path / "bad.json").exists()
