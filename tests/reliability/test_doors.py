"""Every door x every defect: a named error (file, record, fix) or a counted repair, inputs
byte-identical afterwards, and no output left behind on a refusal."""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest

from detimb.cli import analyze, evaluate, make_dataset, merge_classes, rebalance, tile, train
from tests.conftest import write_config

# (name, how the COCO dict is broken, outcome, what the message must name)
DEFECTS: list[tuple[str, Callable[[dict], None], str, str]] = [
    ("annotation_id_0", lambda d: d["annotations"][0].update(id=0), "repair", "id 0 renumbered"),
    ("box_outside_image", lambda d: d["annotations"][0]["bbox"].__setitem__(0, -5.0), "repair", "clipped"),
    ("iscrowd_string", lambda d: d["annotations"][0].update(iscrowd="0"), "error", "iscrowd '0'"),
    ("bbox_string", lambda d: d["annotations"][0]["bbox"].__setitem__(2, "10"), "error", "not 4 finite numbers"),
    ("bbox_nan", lambda d: d["annotations"][0]["bbox"].__setitem__(2, math.nan), "error", "not 4 finite numbers"),
    ("bbox_zero_size", lambda d: d["annotations"][0]["bbox"].__setitem__(3, 0), "error", "width or height <= 0"),
    ("bbox_missing", lambda d: d["annotations"][0].pop("bbox"), "error", "has no 'bbox'"),
    ("duplicate_annotation_id", lambda d: d["annotations"][1].update(id=d["annotations"][0]["id"]), "error",
     "repeats id"),
    ("unknown_category", lambda d: d["annotations"][0].update(category_id=999), "error", "category_id 999"),
    ("unknown_image", lambda d: d["annotations"][0].update(image_id=999), "error", "image_id 999"),
    ("image_id_string", lambda d: d["annotations"][0].update(image_id=str(d["annotations"][0]["image_id"])),
     "error", "write image_id as an integer"),
    ("negative_area", lambda d: d["annotations"][0].update(area=-1), "error", "area -1"),
    ("no_images", lambda d: (d["images"].clear(), d["annotations"].clear()), "error", "no images"),
    ("image_size_zero", lambda d: d["images"][0].update(width=0), "error", "width/height"),
    ("file_name_escapes", lambda d: d["images"][0].update(file_name="../x.png"), "error:images", "escapes"),
    ("not_a_list", lambda d: d.update(annotations={}), "error", "non-list 'annotations'"),
    ("category_name_repeated", lambda d: d["categories"][1].update(name=d["categories"][0]["name"]), "error",
     "categories[1] (id 2) repeats the name"),
]
STRICT_TOOLS = ("analyze", "merge_classes", "rebalance")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tool_runs(tiny_shapes: Path, tmp_path: Path) -> dict[str, Callable[[Path, Path, list[str]], int]]:
    """Each door as a user calls it: (annotation file, output folder, extra args) -> exit code."""
    mapping = tmp_path / "map.yaml"
    cats = json.loads((tiny_shapes / "annotations/train.json").read_text())["categories"]
    mapping.write_text("map: {" + ", ".join(f"{c['name']}: {c['name']}" for c in cats) + "}\n")
    cfg = write_config(tmp_path, tiny_shapes)
    return {
        "analyze": lambda f, out, extra: analyze.main(["--coco", str(f), "--out", str(out), *extra]),
        "merge_classes": lambda f, out, extra: merge_classes.main(["--coco", str(f), "--map", str(mapping),
                                                                   "--out", str(out / "merged.json"), *extra]),
        "rebalance": lambda f, out, extra: rebalance.main(["--coco", str(f), "--out", str(out / "bal.json"),
                                                           "--max-ratio", "2", *extra]),
        "tile": lambda f, out, extra: tile.main(["--coco", str(f), "--images", str(tiny_shapes / "train"),
                                                 "--out", str(out / "tiles"), "--size", "32", "--no-progress"]),
        "train": lambda f, out, extra: train.main(["--config", str(cfg), "--work-dir", str(out / "run"),
                                                   "--max-iters", "1", "--no-progress", "--cfg-options",
                                                   f"data.train.ann_file={f}", "train.eval_interval=1000"]),
    }


DOORS = ["analyze", "merge_classes", "rebalance", "tile", "train"]
CASES = [(door, d[0]) for d in DEFECTS for door in DOORS
         if not (d[2] == "error:images" and door in STRICT_TOOLS)]  # those doors read no image folder


@pytest.mark.parametrize("door,defect", CASES)
def test_every_door_on_every_defect(tiny_shapes, tmp_path, capsys, door, defect):
    _, breaks, outcome, named = next(d for d in DEFECTS if d[0] == defect)
    outcome = outcome.split(":")[0]
    data = json.loads((tiny_shapes / "annotations/train.json").read_text())
    broken = copy.deepcopy(data)
    breaks(broken)
    src = tmp_path / "in" / "ann.json"
    src.parent.mkdir()
    src.write_text(json.dumps(broken))
    before = sha(src)
    out = tmp_path / "out"
    out.mkdir()
    capsys.readouterr()
    rc = tool_runs(tiny_shapes, tmp_path)[door](src, out, [])
    err = capsys.readouterr().err
    assert sha(src) == before  # inputs are never modified
    if outcome == "error":
        assert rc == 2, err
        assert "Traceback" not in err and str(src) in err and named in err, err
        assert list(out.iterdir()) == [], f"left behind: {list(out.rglob('*'))}"
    else:
        assert rc == 0, err
        assert "repaired in memory" in err and named in err, err
        if door == "train":  # counted in the run folder too
            repairs = json.loads((out / "run" / "data_repairs.json").read_text())
            assert sum(repairs["train"].values()) == 1
        if door in STRICT_TOOLS:
            strict_out = tmp_path / "strict"
            strict_out.mkdir()
            assert tool_runs(tiny_shapes, tmp_path)[door](src, strict_out, ["--strict"]) == 2
            assert "--strict" in capsys.readouterr().err and list(strict_out.iterdir()) == []


def test_analyze_reports_counted_repairs(tiny_shapes, tmp_path):
    data = json.loads((tiny_shapes / "annotations/train.json").read_text())
    data["annotations"][0]["id"] = 0
    data["annotations"][1]["bbox"][0] = -3.0
    src = tmp_path / "ann.json"
    src.write_text(json.dumps(data))
    assert analyze.main(["--coco", str(src), "--out", str(tmp_path / "report")]) == 0
    stats = json.loads((tmp_path / "report/stats.json").read_text())
    assert stats["defects_repaired"] == {"clipped_boxes": 1, "dropped_boxes": 0, "renumbered_annotation_ids": 1}


def test_rebalance_refuses_a_file_name_outside_out_images(tiny_shapes, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    (tmp_path / "x.png").write_bytes((tiny_shapes / "train" / sorted(p.name for p in (tiny_shapes / "train")
                                                                      .iterdir())[0]).read_bytes())
    data = json.loads((tiny_shapes / "annotations/train.json").read_text())
    data["images"][0]["file_name"] = "../x.png"
    src = tmp_path / "ann.json"
    src.write_text(json.dumps(data))
    out_images = tmp_path / "out" / "images"
    rc = rebalance.main(["--coco", str(src), "--out", str(tmp_path / "out" / "bal.json"), "--images", str(images),
                         "--out-images", str(out_images), "--max-ratio", "2", "--transforms",
                         "[{type: HorizontalFlip, p: 1.0}]"])
    assert rc == 2 and "escapes" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


RESULT_DEFECTS = [
    ("nan_score", lambda r: r[0].update(score=math.nan), "score nan"),
    ("negative_width", lambda r: r[0]["bbox"].__setitem__(2, -4.0), "width or height <= 0"),
    ("unknown_category", lambda r: r[0].update(category_id=999), "category_id 999"),
    ("unknown_image", lambda r: r[0].update(image_id=999), "image_id 999"),
    ("empty", lambda r: r.clear(), "holds no detections"),
    ("missing_score", lambda r: r[0].pop("score"), "has no 'score'"),
]


@pytest.mark.parametrize("defect", [d[0] for d in RESULT_DEFECTS])
def test_eval_results_defects_are_named_before_anything_is_written(tiny_shapes, tmp_path, capsys, defect):
    _, breaks, named = next(d for d in RESULT_DEFECTS if d[0] == defect)
    gt = json.loads((tiny_shapes / "annotations/val.json").read_text())
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": list(a["bbox"]), "score": 0.9}
               for a in gt["annotations"]]
    breaks(results)
    src = tmp_path / "results.json"
    src.write_text(json.dumps(results))
    before = sha(src)
    out = tmp_path / "out"
    rc = evaluate.main(["--config", str(write_config(tmp_path, tiny_shapes)), "--results", str(src), "--out",
                        str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and named in err and str(src) in err and "Traceback" not in err, err
    assert sha(src) == before and not out.exists()


def test_annotation_id_0_with_perfect_detections_scores_map_1(tiny_shapes, tmp_path):
    """pycocotools reads annotation id 0 as "no match"; renumbered in memory, a perfect
    set of detections scores 1.0 (it scored 0.875 on a file like this before)."""
    gt = json.loads((tiny_shapes / "annotations/val.json").read_text())
    gt["annotations"][0]["id"] = 0
    (tmp_path / "val").mkdir()
    gt_file = tmp_path / "val.json"
    gt_file.write_text(json.dumps(gt))
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": list(a["bbox"]), "score": 1.0}
               for a in gt["annotations"]]
    res_file = tmp_path / "results.json"
    res_file.write_text(json.dumps(results))
    cfg = write_config(tmp_path, tiny_shapes)
    assert evaluate.main(["--config", str(cfg), "--results", str(res_file), "--out", str(tmp_path / "out"),
                          "--cfg-options", f"data.val.ann_file={gt_file}"]) == 0
    stats = json.loads((tmp_path / "out/eval.json").read_text())["bbox"]["stats"]
    assert stats["mAP"] == pytest.approx(1.0)


def test_rebalance_leaves_no_images_behind_when_augmenting_fails(tiny_shapes, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for p in (tiny_shapes / "train").iterdir():
        (images / p.name).write_bytes(p.read_bytes())
    data = json.loads((tiny_shapes / "annotations/train.json").read_text())
    for im in data["images"]:  # every image unreadable: whichever is duplicated first fails mid-way
        (images / im["file_name"]).write_bytes(b"not an image")
    src = tmp_path / "ann.json"
    src.write_text(json.dumps(data))
    out = tmp_path / "out"
    rc = rebalance.main(["--coco", str(src), "--out", str(out / "bal.json"), "--images", str(images),
                         "--out-images", str(out / "images"), "--max-ratio", "2", "--transforms",
                         "[{type: HorizontalFlip, p: 1.0}]"])
    assert rc == 2 and "cannot be read" in capsys.readouterr().err
    assert list(out.iterdir()) == [] if out.exists() else True


def test_a_negative_seed_or_a_bad_count_is_a_named_error_at_every_seeded_tool(tiny_shapes, tmp_path, capsys):
    """numpy's generators take no negative seed: each tool says so before it writes anything."""
    f = tiny_shapes / "annotations/train.json"
    calls = {
        "make_dataset": (lambda: make_dataset.main(["--out", str(tmp_path / "a"), "--seed", "-1"]), "seed (--seed)"),
        "make_dataset counts": (lambda: make_dataset.main(["--out", str(tmp_path / "a"), "--train-counts", "5", "-2",
                                                           "--val-counts", "1", "1"]), "got -2"),
        "make_dataset classes": (lambda: make_dataset.main(["--out", str(tmp_path / "a"), "--train-counts", "5"]),
                                 "one entry per class, got 1 and 6"),
        "tile": (lambda: tile.main(["--coco", str(f), "--images", str(tiny_shapes / "train"), "--out",
                                    str(tmp_path / "a"), "--size", "32", "--seed", "-1", "--no-progress"]),
                 "seed must be an integer >= 0"),
        "rebalance": (lambda: rebalance.main(["--coco", str(f), "--out", str(tmp_path / "a" / "bal.json"),
                                              "--max-ratio", "2", "--seed", "-1"]), "--seed must be an integer >= 0"),
    }
    for name, (call, message) in calls.items():
        assert call() == 2, name
        assert message in capsys.readouterr().err, name
        assert not (tmp_path / "a").exists(), name
