"""The long-tail losses inside the detectors: layouts, inference scores, LVIS labels, resume."""

import json
import shutil

import pytest
import torch
from torchvision.models.detection.roi_heads import RoIHeads

from detimb.config import load_config
from detimb.data.coco import CocoDetection, collate
from detimb.engine.trainer import Trainer
from detimb.errors import ConfigError, DatasetError
from detimb.models import build_detector
from detimb.models.head_specs import DENSE_HEAD, build_classification_loss
from tests.conftest import needs_extra, straight_and_resumed, write_config
from tests.models.test_detectors import class_statistics, train_step


def roi_model(tiny_config, tiny_shapes, loss: dict, **roi):
    ds = CocoDetection(tiny_shapes / "annotations/train.json", tiny_shapes / "train")
    cfg = tiny_config("faster_rcnn", model={"roi_head": {"loss_cls": loss, **roi}})
    return build_detector(cfg.model, ds.label_map, class_statistics(ds)).eval()


def test_softmax_scores_equal_torchvision_postprocess(tiny_config, tiny_shapes):
    head = roi_model(tiny_config, tiny_shapes, {"type": "cross_entropy"}).roi_heads
    g = torch.Generator().manual_seed(0)
    logits, deltas = torch.randn(12, 7, generator=g), torch.randn(12, 28, generator=g)
    proposals = [torch.tensor([[4.0, 4, 30, 30]]).repeat(6, 1) + torch.rand(6, 4, generator=g) * 20
                 for _ in range(2)]
    ours = head.postprocess_detections(logits, deltas, proposals, [(64, 64), (64, 64)])
    theirs = RoIHeads.postprocess_detections(head, logits, deltas, proposals, [(64, 64), (64, 64)])
    for a, b in zip(ours, theirs):
        assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_sigmoid_roi_head_scores_are_sigmoids(tiny_config, tiny_shapes):
    head = roi_model(tiny_config, tiny_shapes, {"type": "binary_cross_entropy"}).roi_heads
    assert head.box_predictor.cls_score.out_features == 6  # K sigmoid outputs, no background column
    logits = torch.full((1, 6), -10.0)
    logits[0, 1] = 2.0  # class 2 only: sigmoid(2) = 0.881; softmax would have given about 1
    boxes, scores, labels = head.postprocess_detections(logits, torch.zeros(1, 28), [torch.tensor([[4.0, 4, 30, 30]])],
                                                        [(64, 64)])
    assert labels[0].tolist() == [2] and scores[0].tolist() == pytest.approx([torch.sigmoid(torch.tensor(2.0)).item()])


@pytest.mark.parametrize("loss,outputs", [({"type": "seesaw", "objectness": True}, 8), ({"type": "eqlv2"}, 7)])
def test_losses_with_their_own_outputs_train_and_detect(tiny_config, tiny_shapes, loss, outputs):
    cfg = tiny_config("faster_rcnn", model={"roi_head": {"loss_cls": loss,
                                                         "cls_predictor": {"type": "normed_linear"}}})
    _, model = train_step(cfg, tiny_shapes)
    assert model.roi_heads.box_predictor.cls_score.out_features == outputs
    assert type(model.roi_heads.box_predictor.cls_score).__name__ == "NormedLinear"


def test_a_sigmoid_loss_in_a_softmax_head_names_where_it_fits(tiny_config, tiny_shapes):
    cfg = load_config(write_config(tiny_shapes.parent, tiny_shapes, "faster_rcnn",
                                   model={"rpn": {"loss_cls": {"type": "seesaw"}}}))
    ds = CocoDetection(tiny_shapes / "annotations/train.json", tiny_shapes / "train")
    with pytest.raises(ConfigError, match=r"model.rpn.loss_cls: 'seesaw' is a softmax loss .* fits in"
                                          r" model.roi_head.loss_cls, model.ssd_head.loss_cls, model.head.loss"):
        build_detector(cfg.model, ds.label_map)
    # and a sigmoid one in the softmax-only dense head: the RPN is not offered to a per-class loss
    with pytest.raises(ConfigError, match=r"model.head.loss: 'eqlv2' is a sigmoid loss .* fits in"
                                          r" model.roi_head.loss_cls, model.retina_head.loss_cls,"
                                          r" model.fcos_head.loss_cls$"):
        build_classification_loss({"type": "eqlv2"}, DENSE_HEAD, None)


def lvis_copy(tiny_shapes, tmp_path):
    """The tiny set with LVIS's per-image labels: every image lists one class it lacks as verified absent."""
    root = tmp_path / "lvis"
    shutil.copytree(tiny_shapes, root)
    for split in ("train", "val"):
        path = root / "annotations" / f"{split}.json"
        data = json.loads(path.read_text())
        cats = [c["id"] for c in data["categories"]]
        present: dict[int, set] = {}
        for a in data["annotations"]:
            present.setdefault(a["image_id"], set()).add(a["category_id"])
        for img in data["images"]:
            absent = [c for c in cats if c not in present.get(img["id"], set())]
            img["neg_category_ids"] = absent[:1]
            img["not_exhaustive_category_ids"] = sorted(present.get(img["id"], set()))[:1]
        for c in data["categories"]:
            c["frequency"] = "r" if c["id"] == cats[-1] else "f"
        path.write_text(json.dumps(data))
    return root


def test_lvis_labels_reach_the_targets_and_bad_ones_are_named(tiny_shapes, tmp_path):
    root = lvis_copy(tiny_shapes, tmp_path)
    ds = CocoDetection(root / "annotations/train.json", root / "train")
    info = ds.images[0]
    target = ds[0][1]
    assert target["neg_labels"].tolist() == [ds.label_map.label(c) for c in info["neg_category_ids"]]
    assert target["not_exhaustive_labels"].tolist() == [ds.label_map.label(c)
                                                        for c in info["not_exhaustive_category_ids"]]
    assert "neg_labels" not in CocoDetection(tiny_shapes / "annotations/train.json", tiny_shapes / "train")[0][1]
    data = json.loads((root / "annotations/train.json").read_text())
    data["images"][3]["neg_category_ids"] = [999]
    (root / "annotations/train.json").write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"images\[3\] .* neg_category_ids names category ids \[999\]"):
        CocoDetection(root / "annotations/train.json", root / "train")


def test_federated_loss_trains_on_lvis_data_and_evaluation_follows_lvis(tiny_shapes, tmp_path):
    needs_extra("faster_coco_eval", "fast-eval")
    root = lvis_copy(tiny_shapes, tmp_path)
    cfg = load_config(write_config(tmp_path, root, "faster_rcnn",
                                   model={"roi_head": {"loss_cls": {"type": "federated", "num_classes": 3}}},
                                   train={"schedule": {"max_iters": 2}}))
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    ds = trainer.train_set
    images, targets = collate([ds[0], ds[1]])
    trainer.model.train()
    negative, flags = trainer.model.roi_heads.lvis_labels(targets)
    assert set(negative.tolist()) == {int(v) for t in targets for v in t["neg_labels"]}
    assert flags.shape == (2, 7) and int(flags.sum()) == sum(len(t["not_exhaustive_labels"]) for t in targets)
    losses = trainer.model(images, targets)
    assert torch.isfinite(sum(losses.values()))
    trainer.train()
    report = json.loads((tmp_path / "run" / "eval.json").read_text())["bbox"]
    assert report["lvis_rules"] and report["group_source"] == "file"
    assert {e["group"] for e in report["per_class"]} == {"rare", "frequent"}


@pytest.mark.parametrize("loss", [{"type": "seesaw", "objectness": True}, {"type": "eqlv2"}])
def test_resume_is_exact_with_loss_state(tiny_config, tmp_path, loss):
    cfg = tiny_config("faster_rcnn", model={"roi_head": {"loss_cls": loss}},
                      train={"schedule": {"max_iters": 6}, "checkpoint_interval": 3, "eval_interval": 100})
    a, b = (state["model"] for state in straight_and_resumed(cfg, tmp_path, 3))
    state = [k for k in a if k.endswith(("cum_samples", "pos_grad", "neg_grad"))]
    assert state and all(a[k].abs().sum() > 0 for k in state)
    assert all(torch.equal(v, b[k]) for k, v in a.items())
