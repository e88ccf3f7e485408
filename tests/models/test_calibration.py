"""Post-hoc calibration (NorCal, logit adjustment) against scores worked out by hand, and in
the RoI head of a restored checkpoint, where it changes the scores and nothing else."""

from __future__ import annotations

import json
import math

import pytest
import torch

from detimb.config import load_config
from detimb.engine.trainer import Trainer
from detimb.errors import ConfigError
from detimb.inference.restore import restore
from detimb.losses import ClassStatistics
from detimb.models.heads.calibration import CALIBRATIONS, LogitAdjustment, NorCal
from tests.conftest import write_config

# 2 foreground classes: class 1 in 100 training images (120 instances), class 2 in 1 image (1 instance)
STATS = ClassStatistics(instances=(120, 1), images=(100, 1), num_images=150)
LOGITS = torch.tensor([[0.0, 1.0, 2.0], [3.0, -1.0, 0.5]])  # background, class 1, class 2


def softmax_row(values: list[float]) -> list[float]:
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


@pytest.mark.parametrize("mode", ["exps", "logits"])
def test_norcal_gamma_zero_is_the_softmax(mode):
    scores = NorCal(STATS, gamma=0.0, mode=mode)(LOGITS)
    assert torch.allclose(scores, torch.softmax(LOGITS, 1)[:, 1:], atol=1e-7)


def test_norcal_exps_by_hand():
    # released "exps": exp(z_c) / n_c^gamma on foreground, background's exp(z_0) kept, then renormalised
    scores = NorCal(STATS, gamma=0.5).forward(LOGITS)
    for row, (z0, z1, z2) in zip(scores.tolist(), LOGITS.tolist()):
        e = [math.exp(z0), math.exp(z1) / 100 ** 0.5, math.exp(z2) / 1 ** 0.5]
        assert row == pytest.approx([e[1] / sum(e), e[2] / sum(e)], rel=1e-6)


def test_norcal_logits_mode_by_hand():
    scores = NorCal(STATS, gamma=0.5, mode="logits")(LOGITS)
    for row, (z0, z1, z2) in zip(scores.tolist(), LOGITS.tolist()):
        assert row == pytest.approx(softmax_row([z0, z1 * 100 ** -0.5, z2])[1:], rel=1e-6)


def test_norcal_counts_a_class_absent_from_training_once():
    stats = ClassStatistics(instances=(5, 0), images=(4, 0), num_images=4)
    scores = NorCal(stats, gamma=1.0)(LOGITS)
    assert torch.isfinite(scores).all()
    z0, z1, z2 = LOGITS[0].tolist()
    assert scores[0].tolist() == pytest.approx(softmax_row([z0, z1 - math.log(4), z2])[1:], rel=1e-6)


def test_logit_adjustment_by_hand():
    # priors over the foreground instances: 120 / 121 and 1 / 121; background untouched
    scores = LogitAdjustment(STATS, tau=1.0)(LOGITS)
    for row, (z0, z1, z2) in zip(scores.tolist(), LOGITS.tolist()):
        want = softmax_row([z0, z1 - math.log(120 / 121), z2 - math.log(1 / 121)])[1:]
        assert row == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("name", CALIBRATIONS.names())
def test_every_calibration_refuses_a_negative_strength(name):
    with pytest.raises(ConfigError, match=">= 0"):
        CALIBRATIONS.build({"type": name, "gamma" if name == "norcal" else "tau": -1.0}, "x", class_stats=STATS)


@pytest.fixture(scope="module")
def plain_checkpoint(tiny_shapes, tmp_path_factory):
    """A Faster R-CNN trained 2 steps without calibration; its class counts then removed, as
    in a checkpoint written before they were stored."""
    root = tmp_path_factory.mktemp("calibration")
    config = write_config(root, tiny_shapes, "faster_rcnn", train={"schedule": {"max_iters": 2}})
    Trainer(load_config(config), root / "run", progress=False).train()
    state = torch.load(root / "run" / "last.pth", weights_only=True)
    assert state["class_statistics"]["images"]  # stored by this version
    del state["class_statistics"]
    torch.save(state, root / "old.pth")
    return config, root / "old.pth"


def test_calibrating_a_checkpoint_changes_the_scores_only(plain_checkpoint, tiny_shapes):
    config, checkpoint = plain_checkpoint
    keep_all = ["model.roi_head.nms_thresh=1.0", "model.roi_head.score_thresh=0.0",
                "model.roi_head.detections_per_img=100000"]
    plain = restore(checkpoint, config=config, overrides=keep_all, device="cpu")
    calibrated = restore(checkpoint, config=config, device="cpu",
                         overrides=[*keep_all, "model.roi_head.calibration={type: norcal, gamma: 1.0}"])
    assert isinstance(calibrated.model.roi_heads.calibration, NorCal)
    # the counts came from the config's training annotations (the checkpoint has none): images per class
    data = json.loads((tiny_shapes / "annotations" / "train.json").read_text())
    images = {c["id"]: len({a["image_id"] for a in data["annotations"] if a["category_id"] == c["id"]})
              for c in data["categories"]}
    assert calibrated.model.roi_heads.calibration.log_counts.exp().round().tolist() == [
        float(images[c]) for c in sorted(images)]
    for a, b in zip(plain.model.state_dict().values(), calibrated.model.state_dict().values()):
        assert torch.equal(a, b)
    image = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x, y = plain.model([image])[0], calibrated.model([image])[0]
    order = lambda d: torch.argsort(d["labels"] * 1e6 + d["boxes"][:, 0] * 1e3 + d["boxes"][:, 1])  # noqa: E731
    x_order, y_order = order(x), order(y)
    assert len(x["boxes"]) == len(y["boxes"]) > 0
    assert torch.equal(x["boxes"][x_order], y["boxes"][y_order]) and torch.equal(x["labels"][x_order],
                                                                                  y["labels"][y_order])
    assert not torch.allclose(x["scores"][x_order], y["scores"][y_order])


@pytest.mark.parametrize("loss", [{"type": "binary_cross_entropy"}, {"type": "seesaw", "objectness": True}])
def test_calibration_of_a_classifier_other_than_softmax_is_refused(tiny_shapes, tmp_path, loss):
    calibration = {"type": "norcal", "gamma": 1.0}
    cfg = load_config(write_config(tmp_path, tiny_shapes, "faster_rcnn",
                                   model={"roi_head": {"loss_cls": loss, "calibration": calibration}}))
    with pytest.raises(ConfigError, match="calibrates a softmax classifier"):
        Trainer(cfg, tmp_path / "run", progress=False)


def test_calibration_of_a_one_stage_detector_is_refused(tiny_shapes, tmp_path):
    with pytest.raises(ConfigError, match="faster_rcnn or mask_rcnn"):
        Trainer(load_config(write_config(tmp_path, tiny_shapes, "retinanet",
                                         model={"roi_head": {"calibration": {"type": "norcal"}}})),
                tmp_path / "run", progress=False)
