"""The one restore path: every door (Predictor, evaluate, tools/infer.py, tools/export.py)
gets the checkpoint's stored priors, config and label map."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from detimb.cli import infer
from detimb.errors import CheckpointError, ConfigError
from detimb.inference.predictor import Predictor
from detimb.inference.restore import restore
from detimb.inference.sliced import SliceSettings, sliced_predict
from detimb.engine.trainer import Trainer
from tests.conftest import write_config

SAMPLING_FREE = {"retina_head": {"optimal_prior": True, "adaptive_score_thresh": True, "score_thresh": 0.0,
                                 "sampler": {"type": "all"}, "loss_cls": {"type": "binary_cross_entropy"},
                                 "balancer": {"type": "guided"}}}


@pytest.fixture(scope="module")
def sampling_free(tiny_shapes, tmp_path_factory):
    """A sampling-free RetinaNet trained one step: its checkpoint stores the optimal prior."""
    root = tmp_path_factory.mktemp("sampling_free")
    config = write_config(root, tiny_shapes, "retinanet", model=SAMPLING_FREE,
                          train={"schedule": {"max_iters": 1}})
    from detimb.config import load_config

    Trainer(load_config(config), root / "run", progress=False).train()
    return config, root / "run" / "last.pth"


def test_restore_applies_the_stored_prior(sampling_free):
    config, checkpoint = sampling_free
    stored = torch.load(checkpoint, weights_only=True)["priors"]["retina_head"]
    restored = restore(checkpoint)
    # p x (K + 1), K = 6 classes: not the config's 0.0, nor prior_probability 0.01 x 7
    assert restored.model.score_thresh == pytest.approx(stored * 7)
    assert stored * 7 not in (0.0, pytest.approx(0.07)) and not restored.model.training
    assert Predictor.from_checkpoint(checkpoint, config).model.score_thresh == pytest.approx(stored * 7)


def test_sliced_inference_applies_the_stored_prior(sampling_free, tiny_shapes, tmp_path):
    config, checkpoint = sampling_free
    threshold = torch.load(checkpoint, weights_only=True)["priors"]["retina_head"] * 7
    scene = tmp_path / "scene.png"
    shutil.copy(sorted((tiny_shapes / "val").iterdir())[0], scene)
    assert infer.main(["--config", str(config), "--checkpoint", str(checkpoint), "--images", str(scene),
                       "--out", str(tmp_path / "out"), "--tile", "64", "--overlap", "0", "--merge", "nms",
                       "--match", "iou", "--match-thr", "1.0"]) == 0
    scores = [r["score"] for r in json.loads((tmp_path / "out" / "results_bbox.json").read_text())]
    # the same model without the stored prior keeps the config's threshold 0.0 and detections below it
    bare = restore(checkpoint).model
    bare.score_thresh = 0.0
    settings = SliceSettings(size=(64, 64), overlap=0.0, method="nms", match="iou", threshold=1.0)
    unthresholded = sliced_predict(bare, scene, settings, torch.device("cpu")).scores
    below = int((unthresholded < threshold).sum())
    assert below > 0 and len(scores) == len(unthresholded) - below
    assert all(s >= threshold - 1e-5 for s in scores)


def test_a_config_that_reads_other_pixels_is_refused(sampling_free, tiny_shapes, tmp_path):
    _, checkpoint = sampling_free
    other = write_config(tmp_path, tiny_shapes, "retinanet", model=SAMPLING_FREE, data={"scale": [0, 1000]})
    with pytest.raises(ConfigError, match="was trained on input .* Fix: give the config the model was trained"):
        restore(checkpoint, config=other)


def test_a_checkpoint_without_a_config_needs_one(sampling_free, tmp_path):
    _, checkpoint = sampling_free
    state = torch.load(checkpoint, weights_only=True)
    del state["config"]
    torch.save(state, tmp_path / "bare.pth")
    with pytest.raises(CheckpointError, match="holds no config. Fix: give the config it was trained with"):
        restore(tmp_path / "bare.pth")


def test_restoring_never_needs_the_weights_training_started_from(tiny_shapes, tmp_path):
    from detimb.config import load_config

    first = write_config(tmp_path, tiny_shapes, "faster_rcnn", train={"schedule": {"max_iters": 1}})
    Trainer(load_config(first), tmp_path / "a", progress=False).train()
    start = tmp_path / "start.pth"
    shutil.copy(tmp_path / "a" / "last.pth", start)
    tuned = write_config(tmp_path, tiny_shapes, "faster_rcnn", model={"weights": str(start)},
                         train={"schedule": {"max_iters": 1}})
    Trainer(load_config(tuned), tmp_path / "b", progress=False).train()
    image = (torch.rand(64, 64, 3, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8).numpy()
    before = Predictor.from_checkpoint(tmp_path / "b" / "last.pth", device="cpu").predict(image)
    start.unlink()  # the file model.weights names is gone; the checkpoint holds every weight
    after = Predictor.from_checkpoint(tmp_path / "b" / "last.pth", device="cpu").predict(image)
    assert (before.boxes == after.boxes).all() and (before.scores == after.scores).all()
    restored = restore(tmp_path / "b" / "last.pth", device="cpu")
    assert restored.config.model.weights == str(start)  # the run's record keeps where it started
