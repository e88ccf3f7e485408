"""The command-line tools, run as a user runs them."""

import json
import subprocess
import sys

import pytest

from detimb.cli import evaluate, train
from tests.conftest import REPO, write_config
from tests.evaluation.test_coco_eval import direct_cocoeval, gt_and_results


def test_eval_of_a_results_file_equals_pycocotools(tiny_shapes, tmp_path, capsys):
    gt, results = gt_and_results(tiny_shapes, jitter=0.3, seed=4)
    res = tmp_path / "results.json"
    res.write_text(json.dumps(results))
    cfg = write_config(tmp_path, tiny_shapes)
    assert evaluate.main(["--config", str(cfg), "--results", str(res), "--out", str(tmp_path / "out")]) == 0
    saved = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert list(saved["bbox"]["stats"].values()) == pytest.approx(list(direct_cocoeval(gt, results)), abs=1e-12)
    assert "per-class AP (rare first)" in capsys.readouterr().out
    for name in ("pr_curves.png", "confusion_matrix.png", "error_breakdown.csv", "error_breakdown.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0, name


def test_train_then_eval_checkpoint(tiny_shapes, tmp_path):
    cfg = write_config(tmp_path, tiny_shapes)
    work = tmp_path / "run"
    assert train.main(["--config", str(cfg), "--work-dir", str(work), "--max-iters", "2", "--no-progress",
                       "--seed", "5", "--cfg-options", "data.batch_size=1"]) == 0
    assert "seed: 5" in (work / "config.yaml").read_text() and "batch_size: 1" in (work / "config.yaml").read_text()
    assert evaluate.main(["--config", str(cfg), "--checkpoint", str(work / "last.pth")]) == 0
    stats = json.loads((work / "eval" / "eval.json").read_text())["bbox"]["stats"]
    results = json.loads((work / "eval" / "results_bbox.json").read_text())
    gt = json.loads((tiny_shapes / "annotations/val.json").read_text())
    # the checkpoint's detections, scored by pycocotools directly (not by detimb's evaluator)
    assert results
    want = direct_cocoeval(gt, results)
    assert list(stats.values()) == pytest.approx(list(want), abs=1e-12)


def test_train_reports_config_and_data_errors(tiny_shapes, tmp_path, capsys):
    cfg = write_config(tmp_path, tiny_shapes)
    assert train.main(["--config", str(cfg), "--cfg-options", "model.nek.type=fpn"]) == 2
    assert "did you mean 'model.neck'" in capsys.readouterr().err
    assert train.main(["--config", str(cfg), "--cfg-options", "data.train.ann_file=/nope.json"]) == 2
    assert "annotation file not found: /nope.json" in capsys.readouterr().err
    assert train.main(["--config", str(cfg), "--work-dir", str(tmp_path / "x"), "--resume"]) == 2
    assert "no checkpoint at" in capsys.readouterr().err


def test_tools_scripts_run_as_files(tmp_path):
    out = subprocess.run([sys.executable, str(REPO / "tools" / "make_dataset.py"), "--out", str(tmp_path / "d"),
                          "--train-counts", "3", "2", "--val-counts", "2", "2", "--image-size", "48"],
                         capture_output=True, text=True, check=True)
    assert "train:" in out.stdout
    data = json.loads((tmp_path / "d" / "annotations" / "train.json").read_text())
    assert len(data["annotations"]) == 5


def test_infer_help_states_every_default(capsys):
    from detimb.cli import infer

    with pytest.raises(SystemExit):
        infer.parse_args(["--help"])
    blocks: dict[str, str] = {}  # each option's entry: its first line starts "  --name", the rest indent deeper
    current = None
    for line in capsys.readouterr().out.split("options:", 1)[1].splitlines():
        if line.startswith("  -"):
            current = line.split()[0].rstrip(",")
            blocks[current] = line
        elif current is not None:
            blocks[current] += " " + line.strip()
    for option, default in (("--tile", "[512]"), ("--overlap", "0.2"), ("--batch-size", "4"), ("--merge", "greedy_nmm"),
                            ("--match", "ios"), ("--match-thr", "0.5"), ("--score-thr", "0.0"), ("--labels", "score")):
        assert f"(default: {default})" in blocks[option], option
