"""Results made for other images (a scene's, scored against its tiles) are refused by name,
and --gt scores them against the file they were made for."""

from __future__ import annotations

import json

from detimb.cli import evaluate as evaluate_cli
from tests.conftest import write_config


def test_scene_results_against_tile_ground_truth_are_refused_and_gt_scores_them(tiny_shapes, tmp_path, capsys):
    config = write_config(tmp_path, tiny_shapes, "faster_rcnn")  # data.val: 64 x 64 px images, ids from 1
    tiles = json.loads((tiny_shapes / "annotations" / "val.json").read_text())
    category = tiles["categories"][0]["id"]
    boxes = [[300.0 + 40 * k, 200.0, 30.0, 30.0] for k in range(5)]  # scene coordinates, far beyond 64 px
    results = [{"image_id": 1, "category_id": category, "bbox": b, "score": 0.9} for b in boxes]
    (tmp_path / "scene_results.json").write_text(json.dumps(results))
    args = ["--config", str(config), "--results", str(tmp_path / "scene_results.json"), "--out", str(tmp_path / "e")]
    assert evaluate_cli.main(args) == 2
    err = capsys.readouterr().err
    assert "5 of its 5 detections reach beyond their image" in err and "--gt" in err
    assert not (tmp_path / "e").exists()
    scene = {"images": [{"id": 1, "file_name": "scene.tif", "width": 800, "height": 600}],
             "annotations": [{"id": k + 1, "image_id": 1, "category_id": category, "bbox": b, "area": 900.0,
                              "iscrowd": 0} for k, b in enumerate(boxes)],
             "categories": tiles["categories"]}
    (tmp_path / "scene.json").write_text(json.dumps(scene))
    assert evaluate_cli.main([*args, "--gt", str(tmp_path / "scene.json")]) == 0
    report = json.loads((tmp_path / "e" / "eval.json").read_text())
    assert report["bbox"]["stats"]["mAP"] == 1.0  # perfect detections of the scene


def test_eval_takes_the_checkpoints_own_config(tiny_shapes, tmp_path, capsys):
    from detimb.config import load_config
    from detimb.engine.trainer import Trainer

    config = write_config(tmp_path, tiny_shapes, "faster_rcnn", train={"schedule": {"max_iters": 1}})
    Trainer(load_config(config), tmp_path / "run", progress=False).train()
    assert evaluate_cli.main(["--checkpoint", str(tmp_path / "run" / "last.pth"), "--out", str(tmp_path / "e")]) == 0
    assert (tmp_path / "e" / "eval.json").is_file()
    assert evaluate_cli.main(["--results", str(tmp_path / "e" / "results_bbox.json")]) == 2
    assert "give --config" in capsys.readouterr().err
