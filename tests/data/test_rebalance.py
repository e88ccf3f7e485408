"""Rebalancing reaches its targets, counts exactly, and never touches its input."""

import json

import cv2
import numpy as np
import pytest

from detimb.cli import rebalance
from detimb.data.coco import CocoDetection
from detimb.data.rebalance import apply_plan, class_counts_by_name, oversample_plan, undersample
from tests.data.test_dataset_tools import tiny_coco


def test_oversampling_reaches_targets_adding_the_least_head():
    coco = tiny_coco()  # car 4, truck 1 (image 1 with 2 cars), bike 1 (image 3 with 1 car)
    plan = oversample_plan(coco, np.random.default_rng(0), targets={5: 3, 9: 2})
    result = apply_plan(coco, plan)
    counts = class_counts_by_name(result)
    assert counts["truck"] == 3 and counts["bike"] == 2
    assert sorted(plan) == [1, 1, 3]  # the only holders; car grows with them: 4 + 2 * 2 + 1
    assert counts["car"] == 9
    assert coco == tiny_coco()


def test_max_ratio_and_unreachable_targets_stop():
    coco = tiny_coco()
    plan = oversample_plan(coco, np.random.default_rng(0), max_ratio=1.0)
    counts = class_counts_by_name(apply_plan(coco, plan))
    # max ratio 1: every class wants the starting maximum (car's 4); truck and bike need 3 copies each of
    # the only images holding them, and car rides along (2 + 1 per pair): 4 + 6 + 3 = 13, ratio 13/4
    assert sorted(plan) == [1, 1, 1, 3, 3, 3]
    assert counts == {"car": 13, "truck": 4, "bike": 4}
    assert len(oversample_plan(coco, np.random.default_rng(0), max_ratio=1.0, max_duplicates=2)) == 2
    with pytest.raises(ValueError):
        oversample_plan(coco, np.random.default_rng(0))


def test_undersampling_drops_exact_fractions_seeded():
    coco = tiny_coco()
    coco["images"] += [{"id": i, "file_name": f"{i}.png", "width": 200, "height": 200} for i in range(5, 9)]
    a = undersample(coco, np.random.default_rng(3), drop_empty=0.5)
    b = undersample(coco, np.random.default_rng(3), drop_empty=0.5)
    assert len(a["images"]) == len(coco["images"]) - 2 and a == b  # 5 empty images -> round(2.5) = 2
    c = undersample(coco, np.random.default_rng(0), drop_majority_only=1.0)  # image 2 holds only car (head)
    assert {im["id"] for im in c["images"]} == {1, 3, 4, 5, 6, 7, 8}
    assert all(ann["image_id"] != 2 for ann in c["annotations"])


def test_augmented_duplicates_are_new_images_with_moved_boxes(tmp_path):
    coco = tiny_coco()
    img_dir = tmp_path / "img"
    img_dir.mkdir()
    for im in coco["images"]:
        cv2.imwrite(str(img_dir / im["file_name"]), np.full((200, 200, 3), 100, np.uint8))
    out_dir = tmp_path / "out_img"
    result = apply_plan(coco, [3], img_dir, out_dir, [{"type": "HorizontalFlip", "p": 1.0}], seed=0)
    dup = result["images"][-1]
    assert dup["duplicate_of"] == 3 and (out_dir / dup["file_name"]).is_file()
    boxes = sorted(a["bbox"] for a in result["annotations"] if a["image_id"] == dup["id"])
    # x' = W - x - w with W = 200: bike [0, 0, 40, 40] -> [160, 0, 40, 40]; car [50, 50, 100, 100] -> [50, 50, ...]
    assert boxes == [[50.0, 50.0, 100.0, 100.0], [160.0, 0.0, 40.0, 40.0]]
    path = tmp_path / "out.json"
    path.write_text(json.dumps(result))
    assert len(CocoDetection(path, out_dir)) == 5  # the output is a valid dataset over out_img


def test_rebalance_tool(tmp_path, capsys):
    src = tmp_path / "a.json"
    src.write_text(json.dumps(tiny_coco()))
    out = tmp_path / "b.json"
    assert rebalance.main(["--coco", str(src), "--out", str(out), "--target", "truck: 2", "--seed", "1"]) == 0
    assert class_counts_by_name(json.loads(out.read_text()))["truck"] == 2
    assert "truck" in capsys.readouterr().out
    assert rebalance.main(["--coco", str(src), "--out", str(out), "--target", "lorry: 2"]) == 2
    assert rebalance.main(["--coco", str(src), "--out", str(src), "--max-ratio", "2"]) == 2
    assert json.loads(src.read_text()) == tiny_coco()


@pytest.mark.parametrize("args,message", [
    (["--max-ratio", "0"], "give targets or a max_ratio (--max-ratio) >= 1, got 0.0"),
    (["--max-ratio", "nan"], "give targets or a max_ratio (--max-ratio) >= 1, got nan"),
    (["--target", "truck: -2"], "--target: truck's count must be a whole number >= 0, got -2"),
    (["--target", "truck: two"], "--target: truck's count must be a whole number >= 0, got 'two'"),
    (["--target", "truck=2"], "(write 'name: count': a colon and a space)"),
    (["--max-ratio", "2", "--drop-empty", "2"], "error: drop_empty (--drop-empty) must be in [0, 1], got 2.0"),
])
def test_rebalance_names_each_bad_option_without_blaming_another(tmp_path, capsys, args, message):
    src = tmp_path / "a.json"
    src.write_text(json.dumps(tiny_coco()))
    assert rebalance.main(["--coco", str(src), "--out", str(tmp_path / "o" / "b.json"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "--transforms" not in err  # every refusal was once blamed on --transforms
    assert not (tmp_path / "o").exists()
