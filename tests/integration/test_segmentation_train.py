"""End-to-end semantic segmentation: patches, hard examples across epochs, resume, eval CLI."""

import json

import torch

from detimb.cli import evaluate
from detimb.models.weights import load_checkpoint
from detimb.engine.trainer import Trainer
from tests.conftest import straight_and_resumed

# 6 patches per epoch, batch 2: epochs end at iterations 3, 6, 9
PATCHES = {"batch_size": 2, "train": {
    "patch_sampler": {"type": "class_balanced", "patch_size": 32, "patches_per_epoch": 6},
    "hard_examples": {"enabled": True, "confidence": 0.99, "max_fraction": 0.5}}}


def seg_config(tiny_config, max_iters, **train):
    return tiny_config("semantic_seg", model={"head": {"channels": 8}}, data=PATCHES,
                       train={"schedule": {"max_iters": max_iters}, "log_interval": 1, **train},
                       evaluation={"regions": {"tail": ["cross", "crescent"]}})


def test_segmentation_run_folder_with_hard_examples(tiny_config, tmp_path):
    cfg = seg_config(tiny_config, 7, eval_interval=4, checkpoint_interval=4)
    work = tmp_path / "run"
    reports = Trainer(cfg, work, progress=False).train()
    expected = {"config.yaml", "metrics.jsonl", "last.pth", "best.pth", "eval.json", "per_class_dice.csv",
                "per_class_dice.png", "confusion_matrix.csv", "confusion_matrix_normalized.csv",
                "confusion_matrix.png", "eval"}
    assert expected <= {p.name for p in work.iterdir()}
    rows = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "loss" in r]
    assert all(r["head/pos_per_image"] + r["head/neg_per_image"] > 0 for r in train_rows)
    # from epoch 1 on (iteration 4) the hard patches of the epoch before open the epoch
    mined = [r for r in train_rows if "hard/reintroduced" in r]
    assert mined and mined[0]["iter"] == 4 and 0 < mined[0]["hard/reintroduced"] <= 3
    assert [r["iter"] for r in rows if "mDice_global" in r] == [4, 7]
    summary = reports["semantic"]["summary"]
    assert 0.0 <= summary["mDice_global"] <= 1.0 and "region_dice/tail" in summary
    state = load_checkpoint(work / "last.pth")
    assert set(state["data"]["hard"]) == {1, 2} and len(state["data"]["hard"][2]) <= 3


def test_segmentation_resume_reintroduces_the_same_patches(tiny_config, tmp_path):
    cfg = seg_config(tiny_config, 8, eval_interval=100, checkpoint_interval=100)
    a, b = straight_and_resumed(cfg, tmp_path, 5)
    assert a["data"] == b["data"]
    assert all(torch.equal(v, b["model"][k]) for k, v in a["model"].items())


def test_eval_cli_scores_a_segmentation_checkpoint(tiny_config, tmp_path, capsys):
    cfg = seg_config(tiny_config, 2, eval_interval=100)
    Trainer(cfg, tmp_path / "run", progress=False).train()
    out = tmp_path / "again"
    code = evaluate.main(["--config", str(tmp_path / "run" / "config.yaml"), "--checkpoint",
                          str(tmp_path / "run" / "last.pth"), "--out", str(out)])
    assert code == 0 and "per-class Dice" in capsys.readouterr().out
    fresh = json.loads((out / "eval.json").read_text())["semantic"]
    trained = json.loads((tmp_path / "run" / "eval.json").read_text())["semantic"]
    assert fresh["confusion"] == trained["confusion"]
