"""torchvision's detectors' weights load into detimb's, which then detect and train the same."""

import os
import pickle

import pytest
import torch
from omegaconf import OmegaConf
from torchvision.models import resnet50
from torchvision.models.detection import (
    fasterrcnn_mobilenet_v3_large_fpn, fasterrcnn_resnet50_fpn, fasterrcnn_resnet50_fpn_v2, fcos_resnet50_fpn,
    maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2, retinanet_resnet50_fpn, retinanet_resnet50_fpn_v2, ssd300_vgg16,
    ssdlite320_mobilenet_v3_large,
)
from torchvision.ops import FrozenBatchNorm2d

from detimb.config import load_config
from detimb.data.coco import CocoDetection, collate
from detimb.errors import CheckpointError, ConfigError
from detimb.models import build_detector
from detimb.models.weights import CLASS_DEPENDENT, load_weights_file
from tests.conftest import write_config

SIZE = 160  # both sides resize to this: torchvision's 800 px would make a CPU test slow
ARCHS = {"fasterrcnn_resnet50_fpn": fasterrcnn_resnet50_fpn, "maskrcnn_resnet50_fpn": maskrcnn_resnet50_fpn,
         "retinanet_resnet50_fpn": retinanet_resnet50_fpn, "fcos_resnet50_fpn": fcos_resnet50_fpn,
         "ssd300_vgg16": ssd300_vgg16, "ssdlite320_mobilenet_v3_large": ssdlite320_mobilenet_v3_large,
         "fasterrcnn_resnet50_fpn_v2": fasterrcnn_resnet50_fpn_v2, "maskrcnn_resnet50_fpn_v2": maskrcnn_resnet50_fpn_v2,
         "retinanet_resnet50_fpn_v2": retinanet_resnet50_fpn_v2,
         "fasterrcnn_mobilenet_v3_large_fpn": fasterrcnn_mobilenet_v3_large_fpn}
SSD = ("ssd300_vgg16", "ssdlite320_mobilenet_v3_large")  # their input size is fixed (300, 320)


ONE_STAGE = {"retinanet_resnet50_fpn": "retina_head", "retinanet_resnet50_fpn_v2": "retina_head",
             "fcos_resnet50_fpn": "fcos_head", "ssd300_vgg16": "ssd_head", "ssdlite320_mobilenet_v3_large": "ssd_head"}


def torchvision_file(tmp_path, arch, num_classes):
    torch.manual_seed(0)
    # every score kept, so that detections are compared, not two empty lists
    thresh = {"score_thresh": 0.0} if arch in ONE_STAGE else {"box_score_thresh": 0.0}
    size = {} if arch in SSD else {"min_size": SIZE, "max_size": SIZE}
    model = ARCHS[arch](weights=None, weights_backbone=None, num_classes=num_classes, **size, **thresh)
    path = tmp_path / f"{arch}_{num_classes}.pth"
    torch.save(model.state_dict(), path)
    return model, path


def arch_config(tmp_path, tiny_shapes, model: dict):
    """A config of the architecture alone (no tiny-model layer), on the tiny data."""
    data = {"train": {"ann_file": str(tiny_shapes / "annotations/train.json"), "img_dir": str(tiny_shapes / "train")},
            "val": {"ann_file": str(tiny_shapes / "annotations/val.json"), "img_dir": str(tiny_shapes / "val")}}
    path = tmp_path / "arch.yaml"
    OmegaConf.save(OmegaConf.create({"model": model, "data": data}), path)
    return load_config(path).model


def detimb_config(tmp_path, tiny_shapes, arch, **model):
    # torchvision built without weights uses BatchNorm2d and trains every stage: say so
    settings = {"arch": arch, "backbone": {"type": "resnet50", "norm": "bn", "trainable_layers": 5},
                "transform": {"min_size": SIZE, "max_size": SIZE}, **model}
    if arch == "fasterrcnn_mobilenet_v3_large_fpn":
        settings["backbone"] = {"type": "mobilenet_v3_large_fpn", "norm": "bn", "trainable_layers": 6}
    if arch in SSD:  # SSD's backbone and size are its variant's
        settings = {"arch": arch, **model}
        settings.setdefault("ssd_head", {})["trainable_layers"] = 5 if arch == "ssd300_vgg16" else None
    return arch_config(tmp_path, tiny_shapes, settings)


def batch(tiny_shapes, with_masks):
    ds = CocoDetection(tiny_shapes / "annotations/train.json", tiny_shapes / "train", with_masks=with_masks)
    return collate([ds[0], ds[1]]), ds.label_map


@pytest.mark.slow
@pytest.mark.parametrize("arch", list(ARCHS))
def test_torchvision_weights_load_strictly_and_detect_and_train_the_same(tmp_path, tiny_shapes, arch):
    (images, targets), label_map = batch(tiny_shapes, arch.startswith("mask"))
    theirs, path = torchvision_file(tmp_path, arch, label_map.num_classes)
    cfg = detimb_config(tmp_path, tiny_shapes, arch, **{ONE_STAGE.get(arch, "roi_head"): {"score_thresh": 0.0}})
    ours = build_detector(cfg, label_map)
    report = load_weights_file(ours, path)
    assert not report.missing and not report.unexpected and not report.reinitialised
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    ours.eval(), theirs.eval()
    with torch.no_grad():
        a, b = ours(images), theirs(images)
    for x, y in zip(a, b):
        keep = y["labels"] > 0  # torchvision's one-stage models also emit their background column; detimb drops it
        assert len(x["boxes"]) > 0 and len(x["boxes"]) == int(keep.sum())
        for key in ("boxes", "scores", "labels"):
            assert torch.equal(x[key], y[key][keep]), key
    losses = []
    for model in (ours, theirs):
        torch.manual_seed(1)
        model.train()
        losses.append({k: v.item() for k, v in model(images, targets).items()})
    assert losses[0].keys() == losses[1].keys()
    for key in losses[1]:
        assert losses[0][key] == pytest.approx(losses[1][key], rel=1e-5, abs=1e-7), key


@pytest.mark.parametrize("arch", ["fasterrcnn_resnet50_fpn", "retinanet_resnet50_fpn", "fcos_resnet50_fpn",
                                  "ssdlite320_mobilenet_v3_large"])
def test_another_class_count_reinitialises_exactly_the_class_layers(tmp_path, tiny_shapes, arch):
    (_, _), label_map = batch(tiny_shapes, False)
    _, path = torchvision_file(tmp_path, arch, 91)  # COCO's 91
    cfg = detimb_config(tmp_path, tiny_shapes, arch, weights=str(path))
    model = build_detector(cfg, label_map)
    saved = torch.load(path, weights_only=True)
    state_shape = {k: v.shape for k, v in model.state_dict().items()}
    report = load_weights_file(model, path)
    want = sorted(k for k in saved if k.startswith(CLASS_DEPENDENT) and saved[k].shape != state_shape[k])
    assert sorted(report.reinitialised) == want and want
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in saved.items() if k not in want)
    assert all(state[k].shape != saved[k].shape for k in want)
    strict = detimb_config(tmp_path, tiny_shapes, arch, weights=str(path), weights_strict=True)
    with pytest.raises(CheckpointError, match="another class count .* model.weights_strict"):
        build_detector(strict, label_map)


def test_imagenet_backbone_loads_frozen_with_torchvision_defaults(tmp_path, tiny_shapes):
    torch.manual_seed(0)
    path = tmp_path / "resnet50.pth"
    classifier = resnet50(weights=None)
    torch.save(classifier.state_dict(), path)
    cfg = arch_config(tmp_path, tiny_shapes, {"arch": "fasterrcnn_resnet50_fpn",
                                              "backbone": {"type": "resnet50", "weights": str(path)},
                                              "transform": {"min_size": SIZE, "max_size": SIZE}})
    (images, targets), label_map = batch(tiny_shapes, False)
    model = build_detector(cfg, label_map)
    body = model.backbone.body
    assert torch.equal(body.conv1.weight, classifier.conv1.weight)
    assert isinstance(body.bn1, FrozenBatchNorm2d) and not any(isinstance(m, torch.nn.BatchNorm2d)
                                                               for m in model.modules())
    before = {k: v.clone() for k, v in body.state_dict().items()}
    optim = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    sum(model(images, targets).values()).backward()
    optim.step()
    after = body.state_dict()
    # 3 trainable stages: conv1 and layer1 (5 - 3 = 2 stages) get no gradient and do not move
    frozen = [k for k in before if k.startswith(("conv1.", "bn1.", "layer1."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert all(p.grad is None for n, p in body.named_parameters() if n.startswith(("conv1.", "layer1.")))
    assert not torch.equal(before["layer4.2.conv3.weight"], after["layer4.2.conv3.weight"])


class Boom:
    def __reduce__(self):
        return (os.system, ("touch /tmp/detimb_pwned_by_weights",))


def test_bad_weight_files_are_named_errors(tmp_path, tiny_shapes):
    (_, _), label_map = batch(tiny_shapes, False)
    _, good = torchvision_file(tmp_path, "retinanet_resnet50_fpn", label_map.num_classes)
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    torn = tmp_path / "torn.pth"
    torn.write_bytes(good.read_bytes()[:5000])
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"model": Boom()}))
    # a file that is neither zip nor pickle: named as such, not with torch's advice on weights_only
    cases = {text: r"not a checkpoint \(it starts with b'no', where a file torch.save wrote", torn: "torn",
             evil: "could run code", good: r"do not fit this model: .* looks like RetinaNet on ResNet-50"}
    for path, message in cases.items():
        cfg = detimb_config(tmp_path, tiny_shapes, "fasterrcnn_resnet50_fpn", weights=str(path))
        with pytest.raises(CheckpointError, match=message):
            build_detector(cfg, label_map)
    assert not os.path.exists("/tmp/detimb_pwned_by_weights")


def test_unknown_architecture_names_the_known_ones(tmp_path, tiny_shapes):
    with pytest.raises(ConfigError, match=r"model.arch: unknown architecture 'fasterrcnn_resnet50' \(did you mean"
                                          r" 'fasterrcnn_resnet50_fpn'\?\)"):
        load_config(write_config(tmp_path, tiny_shapes, "faster_rcnn", model={"arch": "fasterrcnn_resnet50"}))


def test_load_from_takes_a_plain_state_dict_and_old_layouts_are_renamed(tiny_config, tiny_shapes, tmp_path):
    from detimb.engine.trainer import Trainer
    from detimb.models.weights import load_weights

    (_, _), label_map = batch(tiny_shapes, False)
    cfg = tiny_config("faster_rcnn", train={"schedule": {"max_iters": 1}})
    torch.manual_seed(3)
    source = build_detector(cfg.model, label_map)
    plain = tmp_path / "plain.pth"
    torch.save(source.state_dict(), plain)  # no 'model', no label_map: what torchvision users save
    trainer = Trainer(cfg, tmp_path / "run", load_from=plain, progress=False)
    assert all(torch.equal(v, trainer.model.state_dict()[k]) for k, v in source.state_dict().items())
    # detimb's layout before torchvision's: backbone.body.body.* and backbone.neck.fpn.*
    old = {k.replace("backbone.body.", "backbone.body.body.").replace("backbone.fpn.", "backbone.neck.fpn."): v
           for k, v in source.state_dict().items()}
    target = build_detector(cfg.model, label_map)
    report = load_weights(target, old, "old.pth")
    assert report.renamed == sum(k.startswith("backbone.") for k in old) and not report.unexpected
    assert all(torch.equal(v, target.state_dict()[k]) for k, v in source.state_dict().items())
