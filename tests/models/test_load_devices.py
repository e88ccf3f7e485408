"""Every load keeps the model's device, and fine-tuning keeps or restarts the losses' statistics.

The file is read to the CPU while the model may sit on a GPU; the ``meta`` device stands in
for CUDA: a buffer rebuilt from the file's tensor would land on the CPU and fail there.
"""

from __future__ import annotations

import pytest
import torch

from detimb.data.coco import CocoDetection
from detimb.losses import BALANCERS, CLS_LOSSES
from detimb.models import build_detector
from detimb.models.weights import load_weights, objective_buffers
from tests.models.test_detectors import class_statistics, train_step

# every classification loss in the RoI head, class-weighted CE, GHM-R and the balancers with state
SLOTS = {f"cls_{name}": {"loss_cls": {"type": name}} for name in CLS_LOSSES.names()}
SLOTS["cls_cross_entropy_effective_num"] = {"loss_cls": {"type": "cross_entropy", "class_weight": "effective_num"}}
SLOTS["box_ghm_r"] = {"loss_bbox": {"type": "ghm_r"}}
SLOTS.update({f"balancer_{name}": {"balancer": {"type": name}} for name in BALANCERS.names()})


def trained(tiny_config, tiny_shapes, slot: dict):
    cfg = tiny_config("faster_rcnn", model={"roi_head": slot})
    _, model = train_step(cfg, tiny_shapes)
    ds = CocoDetection(tiny_shapes / "annotations/train.json", tiny_shapes / "train")
    return cfg, ds, model


def on_meta(model) -> list[str]:
    """The names of tensors not on the meta device."""
    return [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.device.type != "meta"]


@pytest.mark.parametrize("slot", list(SLOTS), ids=list(SLOTS))
def test_loading_keeps_every_tensor_on_the_models_device(tiny_config, tiny_shapes, slot):
    cfg, ds, model = trained(tiny_config, tiny_shapes, SLOTS[slot])
    state = model.state_dict()
    # resume and inference: an exact load into a model built without the training statistics
    bare = build_detector(cfg.model, ds.label_map).to("meta")
    with pytest.warns(UserWarning, match="meta"):  # torch: copying into meta tensors is a no-op
        bare.load_state_dict(state)
    assert on_meta(bare) == []
    # --load-from: the fine-tune path, into a model built with them
    tuned = build_detector(cfg.model, ds.label_map, class_statistics(ds)).to("meta")
    with pytest.warns(UserWarning, match="meta"):
        load_weights(tuned, state, "last.pth")
    assert on_meta(tuned) == []


@pytest.mark.parametrize("loss", ["seesaw", "eqlv2"])
def test_fine_tuning_from_a_checkpoint_of_the_same_config_restores_the_statistics(tiny_config, tiny_shapes, loss):
    cfg, ds, model = trained(tiny_config, tiny_shapes, {"loss_cls": {"type": loss}})
    state = model.state_dict()
    keys = [k for k in objective_buffers(model) if k.startswith("roi_heads.objective.loss_cls.")]
    assert keys and all(state[k].numel() > 0 for k in keys)
    fresh = build_detector(cfg.model, ds.label_map, class_statistics(ds))  # statistics sized on first use
    assert all(fresh.state_dict()[k].numel() == 0 for k in keys)
    report = load_weights(fresh, state, "last.pth")
    assert report.restarted == []
    for key in keys:
        assert torch.equal(fresh.state_dict()[key], state[key])


def test_statistics_for_another_class_count_restart_and_are_reported(tiny_config, tiny_shapes):
    cfg, ds, model = trained(tiny_config, tiny_shapes, {"loss_cls": {"type": "seesaw"}})
    key = "roi_heads.objective.loss_cls.cum_samples"
    state = {**model.state_dict(), key: torch.ones(4, dtype=torch.float64)}  # counts of 3 classes
    report = load_weights(model, state, "other.pth")
    assert report.restarted == [key]
    assert "1 running statistics of the losses restarted" in report.summary()
    assert model.state_dict()[key].shape == (ds.label_map.num_classes,)
