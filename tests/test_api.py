"""The Python API: the README's snippet, predict on every input kind, drawing, bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import detimb
from detimb.api import InputError, Predictor, draw, load_image
from detimb.visualization import class_color
from detimb.cli import evaluate as evaluate_cli
from detimb.cli import infer
from tests.conftest import REPO, write_config


@pytest.fixture(scope="module")
def checkpoint(tiny_shapes, tmp_path_factory) -> Path:
    """A detector trained a few iterations through the API itself."""
    tmp = tmp_path_factory.mktemp("api")
    cfg = write_config(tmp, tiny_shapes)
    result = detimb.train(cfg, work_dir=tmp / "run", progress=False,
                          overrides={"train.schedule.max_iters": 3, "model.roi_head.score_thresh": 0.0})
    assert "bbox" in result.reports and result.work_dir == tmp / "run" and "per-class AP" in result.table
    return tmp / "run" / "last.pth"


def first_image(tiny_shapes: Path) -> Path:
    return sorted((tiny_shapes / "val").iterdir())[0]


def test_the_readme_snippet_runs(checkpoint, tiny_shapes):
    text = (REPO / "README.md").read_text()
    code = re.search(r"## Python API\n\n```python\n(.*?)```", text, re.S).group(1)
    code = code.replace("work_dirs/demo/best.pth", str(checkpoint)).replace("data/shapes/val/000001.png",
                                                                            str(first_image(tiny_shapes)))
    scope: dict = {}
    exec(code, scope)  # noqa: S102 - the documented three lines, as a user runs them
    prediction = scope["prediction"]
    assert len(prediction) > 0 and prediction.boxes.shape == (len(prediction), 4)
    assert set(prediction.names) <= {"square", "circle", "triangle", "star", "cross", "crescent"}


def test_predictions_equal_tools_infer(checkpoint, tiny_shapes, tmp_path):
    image = first_image(tiny_shapes)
    ours = Predictor.from_checkpoint(checkpoint, score_threshold=0.0).predict(image)
    cfg = write_config(tmp_path, tiny_shapes)
    # one 64 px tile covering the image, and a merge that suppresses nothing (IoU > 1 never happens)
    assert infer.main(["--config", str(cfg), "--checkpoint", str(checkpoint), "--images", str(image), "--out",
                       str(tmp_path / "out"), "--tile", "64", "--overlap", "0", "--merge", "nms", "--match", "iou",
                       "--match-thr", "1.0", "--cfg-options", "model.roi_head.score_thresh=0.0"]) == 0
    theirs = json.loads((tmp_path / "out" / "results_bbox.json").read_text())
    theirs = sorted(theirs, key=lambda r: -r["score"])
    assert len(theirs) == len(ours)
    for r, box, score, cid in zip(theirs, ours.boxes, ours.scores, ours.category_ids):
        x, y, w, h = r["bbox"]
        assert np.allclose([x, y, x + w, y + h], box, atol=2e-3) and abs(r["score"] - score) < 1e-4
        assert r["category_id"] == cid


def test_every_input_kind_and_batches_give_the_same_predictions(checkpoint, tiny_shapes):
    predictor = Predictor.from_checkpoint(checkpoint, device="cpu")
    paths = sorted((tiny_shapes / "val").iterdir())[:3]
    rgb = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    one_by_one = [predictor.predict(p) for p in paths]
    batched = predictor.predict(paths, batch_size=2)
    as_arrays = predictor.predict(rgb)
    as_bgr = predictor.predict([a[..., ::-1].copy() for a in rgb], color="BGR")
    as_pil = predictor.predict([Image.open(p) for p in paths])
    for variant in (batched, as_arrays, as_bgr, as_pil):
        for a, b in zip(one_by_one, variant):
            assert np.allclose(a.boxes, b.boxes, atol=1e-4) and np.allclose(a.scores, b.scores, atol=1e-5)
            assert a.names == b.names


def test_bad_inputs_are_named(checkpoint, tmp_path):
    predictor = Predictor.from_checkpoint(checkpoint)
    (tmp_path / "notes.txt").write_text("not an image")
    cases = [(tmp_path / "missing.png", "no such image file"), (tmp_path / "notes.txt", "not an image"),
             (np.zeros((8, 8), np.uint8), r"must be \(H, W, 3\)"), (np.zeros((8, 8, 3), np.float32), "must be uint8"),
             (42, "cannot read an image from a int")]
    for bad, match in cases:
        with pytest.raises(InputError, match=match):
            predictor.predict(bad)


def test_draw_gives_one_stable_colour_per_class(checkpoint, tiny_shapes):
    image = first_image(tiny_shapes)
    prediction = Predictor.from_checkpoint(checkpoint, score_threshold=0.0).predict(image)
    picture = draw(image, prediction, max_draw=5)
    pixels = load_image(image)
    assert picture.shape == pixels.shape and picture.dtype == np.uint8 and not np.array_equal(picture, pixels)
    # category 3's colour by hand: hue 3 x 0.618034 mod 1 = 0.854102, HSV (0.854102, 0.85, 0.95):
    # sector 5, f 0.124612 -> (v, v(1 - s), v(1 - s f)) = (0.95, 0.1425, 0.849376) -> (242, 36, 216)
    assert class_color(3) == (242, 36, 216) and class_color(4) != class_color(3)
    # every detection's box is outlined in its class's colour, the same in any picture
    x0, y0 = int(prediction.boxes[0][0]), int(prediction.boxes[0][1])
    first = draw(image, prediction, max_draw=1)
    assert tuple(first[y0 + 1, x0]) == class_color(int(prediction.category_ids[0]))


def test_mask_rcnn_predictions_carry_masks(tiny_shapes, tmp_path):
    cfg = write_config(tmp_path, tiny_shapes, "mask_rcnn", model={"roi_head": {"score_thresh": 0.0}})
    detimb.train(cfg, work_dir=tmp_path / "run", progress=False, overrides=["train.schedule.max_iters=2"])
    image = first_image(tiny_shapes)
    prediction = Predictor.from_checkpoint(tmp_path / "run" / "last.pth", score_threshold=0.0).predict(image)
    h, w = load_image(image).shape[:2]
    assert len(prediction) > 0 and prediction.masks.shape == (len(prediction), h, w)
    assert prediction.masks.dtype == bool


def test_semantic_segmentation_predicts_a_class_map_and_draws_a_legend(tiny_shapes, tmp_path):
    cfg = write_config(tmp_path, tiny_shapes, "semantic_seg", model={"head": {"channels": 8}})
    detimb.train(cfg, work_dir=tmp_path / "run", progress=False, overrides=["train.schedule.max_iters=2"])
    image = first_image(tiny_shapes)
    prediction = Predictor.from_checkpoint(tmp_path / "run" / "last.pth").predict(image)
    coco = json.loads((tiny_shapes / "annotations/train.json").read_text())
    ids = {0} | {c["id"] for c in coco["categories"]}
    assert prediction.class_map.shape == load_image(image).shape[:2] and set(np.unique(prediction.class_map)) <= ids
    assert len(prediction) == 0
    picture = draw(image, prediction, names={c["id"]: c["name"] for c in coco["categories"]})
    assert picture.shape == load_image(image).shape


def pycocotools_map(ann_file: Path, results: list[dict]) -> float:
    """COCO mAP of ``results`` computed by pycocotools directly (the oracle)."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


def test_evaluate_scores_what_pycocotools_scores(checkpoint, tiny_shapes, tmp_path):
    cfg = write_config(tmp_path, tiny_shapes)
    result = detimb.evaluate(cfg, checkpoint=checkpoint, out=tmp_path / "api",
                             overrides=["model.roi_head.score_thresh=0.0"])
    assert result.out_dir == tmp_path / "api" and "per-class AP (rare first)" in result.table
    written = json.loads((tmp_path / "api" / "results_bbox.json").read_text())
    oracle = pycocotools_map(tiny_shapes / "annotations/val.json", written)
    assert result.reports["bbox"]["stats"]["mAP"] == pytest.approx(oracle, abs=1e-9) and len(written) > 0
    # the CLI prints the same table; results files split in two score as the whole (#30)
    assert evaluate_cli.main(["--config", str(cfg), "--results", str(tmp_path / "api" / "results_bbox.json"),
                              "--out", str(tmp_path / "cli")]) == 0
    (tmp_path / "a.json").write_text(json.dumps(written[::2]))
    (tmp_path / "b.json").write_text(json.dumps(written[1::2]))
    split = detimb.evaluate(cfg, results=[tmp_path / "a.json", tmp_path / "b.json"], out=tmp_path / "split")
    assert split.reports["bbox"]["stats"]["mAP"] == pytest.approx(oracle, abs=1e-9)
    with pytest.raises(detimb.api.DetimbError, match="a checkpoint or results files"):
        detimb.evaluate(cfg)


def test_dir_and_help_show_the_api():
    import pydoc

    import detimb

    assert {"Predictor", "train", "evaluate", "draw", "sweep", "__version__"} <= set(dir(detimb))
    text = pydoc.render_doc(detimb, renderer=pydoc.plaintext)
    assert "class Predictor" in text and "train(config" in text and "evaluate(config" in text
