"""End-to-end: train each detector a fixed number of iterations on a tiny generated dataset."""

import json
from pathlib import Path

import pytest
import torch

from detimb.config import config_to_yaml, load_config
from detimb.models.weights import load_checkpoint
from detimb.engine.precision import check_finite
from detimb.engine.trainer import Trainer
from detimb.data.synthetic import ShapesSpec, make_shapes_dataset
from detimb.errors import ConfigError, TrainingError
from tests.conftest import straight_and_resumed, write_config


@pytest.mark.parametrize("detector", ["faster_rcnn", "retinanet", "mask_rcnn"])
def test_train_writes_a_complete_run_folder(tiny_config, tmp_path, detector):
    cfg = tiny_config(detector, train={"eval_interval": 2, "checkpoint_interval": 2})
    work = tmp_path / "run"
    reports = Trainer(cfg, work, progress=False).train()
    expected = {"config.yaml", "metrics.jsonl", "last.pth", "best.pth", "eval.json", "per_class_ap.csv",
                "per_class_ap.png", "results_bbox.json", "tensorboard", "eval", "confusion_matrix.csv",
                "confusion_matrix_normalized.csv", "confusion_matrix.png", "data_repairs.json"}
    if json.loads((work / "results_bbox.json").read_text()):  # curves need detections (4 iterations may give none)
        expected |= {"pr_curves.csv", "pr_curves.png", "error_breakdown.csv", "error_breakdown.png"}
    if detector == "mask_rcnn":
        expected.add("results_segm.json")
        assert set(reports) == {"bbox", "segm"}
    assert expected <= {p.name for p in work.iterdir()}
    assert any((work / "tensorboard").iterdir())
    # the first training batches as the model saw them, with their ground truth
    assert sorted(p.name for p in (work / "train_batches").iterdir()) == ["iter_1.png", "iter_2.png", "iter_3.png"]
    # validation pictures, ground truth | prediction, the image with the rarest class (crescent) first
    samples = sorted((work / "eval" / "samples").glob("*.png"))
    assert 1 <= len(samples) <= 6
    val = json.loads(Path(cfg.data.val.ann_file).read_text())
    rarest = min(val["categories"], key=lambda c: sum(a["category_id"] == c["id"] for a in
                                                      json.loads(Path(cfg.data.train.ann_file).read_text())
                                                      ["annotations"]))
    holding = {im["file_name"].rsplit(".", 1)[0] for im in val["images"]
               if any(a["image_id"] == im["id"] and a["category_id"] == rarest["id"] for a in val["annotations"])}
    assert {p.stem for p in samples} & holding
    rows = [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "loss" in r]
    assert [r["iter"] for r in train_rows] == [2, 4]
    assert all(r["loss"] > 0 for r in train_rows)
    assert all(0 <= r["data_time"] < r["sec_per_iter"] for r in train_rows)  # the loader's wait, in seconds
    heads = ["rpn", "roi_heads"] if detector != "retinanet" else ["head"]
    for head in heads:  # what each sampler kept, logged per iteration
        assert all(f"{head}/pos_per_image" in r and f"{head}/neg_mean_iou" in r for r in train_rows)
    classifier = "head" if detector == "retinanet" else "roi_heads"
    fractions = [v for k, v in train_rows[-1].items() if k.startswith(f"{classifier}/pos_frac/")]
    assert len(fractions) == 6 and abs(sum(fractions) - 1.0) < 1e-5
    assert [r["iter"] for r in rows if "bbox_mAP" in r] == [2, 4]
    assert config_to_yaml(load_config(work / "config.yaml")) == config_to_yaml(cfg)
    state = load_checkpoint(work / "last.pth")
    assert state["iteration"] == 4 and state["label_map"]["names"][0] == "square"
    saved = json.loads((work / "eval.json").read_text())
    assert saved["bbox"]["stats"] == reports["bbox"]["stats"]


def test_resume_continues_exactly(tiny_config, tmp_path):
    cfg = tiny_config("faster_rcnn", train={"schedule": {"max_iters": 6}, "checkpoint_interval": 3,
                                            "eval_interval": 100})
    # an interrupted run: stop at 3 (its last.pth is written at iteration 3), then resume to 6
    a, b = straight_and_resumed(cfg, tmp_path, 3)
    assert b["iteration"] == 6
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    rows = [json.loads(line) for line in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in rows if "loss" in r] == [2, 3, 4, 6]


@pytest.mark.parametrize("sampler", [{"type": "repeat_factor", "threshold": 0.3}, {"type": "class_aware"}])
def test_resume_is_exact_with_image_samplers(tiny_config, tmp_path, sampler):
    # tiny epochs (batch 4) so the run crosses epochs of varying length
    cfg = tiny_config("faster_rcnn", data={"batch_size": 4, "train": {"sampler": sampler}},
                      train={"schedule": {"max_iters": 14}, "checkpoint_interval": 100, "eval_interval": 100})
    a, b = straight_and_resumed(cfg, tmp_path, 9)
    assert all(torch.equal(v, b["model"][k]) for k, v in a["model"].items())


def test_resume_is_exact_with_copy_paste(tiny_config, tmp_path):
    # class-aware image sampling with class-aware pasting, through epochs of 4 items
    cfg = tiny_config("faster_rcnn", data={"batch_size": 4, "train": {"sampler": {"type": "class_aware"},
                                                                      "copy_paste": {"enabled": True, "max_pasted": 5,
                                                                                     "repeat_threshold": 0.3}}},
                      train={"schedule": {"max_iters": 10}, "checkpoint_interval": 100, "eval_interval": 100})
    a, b = straight_and_resumed(cfg, tmp_path, 6)
    assert all(torch.equal(v, b["model"][k]) for k, v in a["model"].items())


def test_resume_is_exact_with_loader_workers(tiny_config, tmp_path):
    # two workers that persist across the epochs (batch 4: several epochs), flips seeded per (epoch, index)
    cfg = tiny_config("faster_rcnn", data={"batch_size": 4, "num_workers": 2,
                                           "train": {"sampler": {"type": "repeat_factor", "threshold": 0.3}}},
                      train={"schedule": {"max_iters": 14}, "checkpoint_interval": 100, "eval_interval": 100})
    a, b = straight_and_resumed(cfg, tmp_path, 9)
    assert all(torch.equal(v, b["model"][k]) for k, v in a["model"].items())



def test_a_checkpoint_saved_without_amp_resumes_with_a_fresh_loss_scale(tiny_config, tmp_path):
    cfg = tiny_config("faster_rcnn", train={"schedule": {"max_iters": 2}})
    Trainer(cfg, tmp_path / "a", progress=False).train()
    state = load_checkpoint(tmp_path / "a" / "last.pth")
    assert state["scaler"] == {}  # saved on the CPU, without AMP
    trainer = Trainer(cfg, tmp_path / "b", progress=False)
    trainer.scaler = torch.amp.GradScaler("cpu", enabled=True)  # as on a GPU with fp16
    trainer._restore(state, tmp_path / "a" / "last.pth")
    assert trainer.iteration == 2 and trainer.scaler.get_scale() == 2.0 ** 16  # torch's initial scale

def test_resume_on_other_classes_is_refused(tiny_config, tmp_path):
    cfg = tiny_config("faster_rcnn", train={"schedule": {"max_iters": 2}})
    Trainer(cfg, tmp_path / "a", progress=False).train()
    other = tmp_path / "other"
    make_shapes_dataset(other, ShapesSpec(train_counts=(3, 2), val_counts=(2, 2), image_size=64,
                                          min_object=10, max_object=24))
    cfg_other = load_config(write_config(tmp_path, other, "faster_rcnn"))
    with pytest.raises(ConfigError, match=r"trained on classes \('square', 'circle', 'triangle'"):
        Trainer(cfg_other, tmp_path / "b", resume=tmp_path / "a" / "last.pth", progress=False)


def test_nan_loss_stops_with_iteration_and_term(tiny_config, tmp_path):
    cfg = tiny_config("faster_rcnn", model={"roi_head": {"balancer": {"type": "fixed",
                                                                       "weights": {"loss_box_reg": float("nan")}}}})
    with pytest.raises(TrainingError, match=r"iteration 1: loss term 'loss_box_reg' is nan"):
        Trainer(cfg, tmp_path / "nan", progress=False).train()


def test_check_finite_names_inf():
    with pytest.raises(TrainingError, match="'b' is inf"):
        check_finite({"a": torch.tensor(1.0), "b": torch.tensor(float("inf"))}, 7)


def test_load_from_starts_at_zero_with_the_weights(tiny_config, tmp_path):
    cfg = tiny_config("faster_rcnn", train={"schedule": {"max_iters": 2}})
    Trainer(cfg, tmp_path / "a", progress=False).train()
    trainer = Trainer(cfg, tmp_path / "b", load_from=tmp_path / "a" / "last.pth", progress=False)
    saved = load_checkpoint(tmp_path / "a" / "last.pth")["model"]
    assert trainer.iteration == 0
    assert all(torch.equal(v, saved[k]) for k, v in trainer.model.state_dict().items())


def test_ctrl_c_stops_after_the_iteration_with_a_checkpoint_and_resume_is_exact(tiny_config, tmp_path, monkeypatch):
    import os
    import signal

    from detimb.engine.interrupt import TrainingInterrupted

    cfg = tiny_config("faster_rcnn", train={"schedule": {"max_iters": 5}, "checkpoint_interval": 100,
                                            "eval_interval": 100})
    Trainer(cfg, tmp_path / "straight", progress=False).train()
    real_step = Trainer.step

    def step_then_ctrl_c(self, images, targets):
        out = real_step(self, images, targets)
        if self.iteration == 2:  # Ctrl-C arrives inside iteration 3, before it is counted
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(Trainer, "step", step_then_ctrl_c)
    with pytest.raises(TrainingInterrupted, match=r"interrupted after iteration 3: saved .*last.pth.*--resume"):
        Trainer(cfg, tmp_path / "stopped", progress=False).train()
    assert load_checkpoint(tmp_path / "stopped" / "last.pth")["iteration"] == 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is given back
    monkeypatch.setattr(Trainer, "step", real_step)
    Trainer(cfg, tmp_path / "stopped", resume=tmp_path / "stopped" / "last.pth", progress=False).train()
    a, b = load_checkpoint(tmp_path / "straight" / "last.pth"), load_checkpoint(tmp_path / "stopped" / "last.pth")
    assert all(torch.equal(v, b["model"][k]) for k, v in a["model"].items())


def test_the_console_says_what_trains_and_each_evaluation(tiny_config, tmp_path, caplog):
    cfg = tiny_config("faster_rcnn", train={"schedule": {"max_iters": 4}, "eval_interval": 2})
    with caplog.at_level("INFO", logger="detimb"):
        Trainer(cfg, tmp_path / "run", progress=False).train()
    text = caplog.text
    assert "model: faster_rcnn + small_cnn + fpn" in text and "parameters" in text
    assert "6 classes; rarest" in text and "schedule: 4 iterations of batch" in text and str(tmp_path / "run") in text
    assert "evaluation at iteration 2: bbox_mAP" in text and "evaluation at iteration 4: bbox_mAP" in text
    assert "bbox_AP_fixed" in text


def test_no_eval_trains_without_evaluating(tiny_shapes, tmp_path):
    from detimb.cli import train as train_cli

    config = write_config(tmp_path, tiny_shapes, "faster_rcnn", train={"eval_interval": 1})
    assert train_cli.main(["--config", str(config), "--work-dir", str(tmp_path / "run"), "--max-iters", "2",
                           "--no-progress", "--no-eval"]) == 0
    made = {p.name for p in (tmp_path / "run").iterdir()}
    assert "last.pth" in made and not {"best.pth", "eval.json", "eval"} & made


def test_evaluation_on_a_subset_says_so_and_scores_only_it(tiny_config, tmp_path, caplog):
    cfg = tiny_config("faster_rcnn", train={"schedule": {"max_iters": 1}}, evaluation={"max_images": 3})
    with caplog.at_level("WARNING", logger="detimb"):
        Trainer(cfg, tmp_path / "run", progress=False).train()
    total = len(json.loads(Path(cfg.data.val.ann_file).read_text())["images"])
    assert any(f"evaluating on 3 of {total} validation images" in r.message for r in caplog.records)
    scored = {r["image_id"] for r in json.loads((tmp_path / "run" / "results_bbox.json").read_text())}
    assert len(scored) <= 3
