"""TorchScript and ONNX exports give the eager model's detections."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from detimb.api import Predictor
from detimb.cli import export
from detimb.engine.trainer import Trainer
from tests.conftest import needs_extra

DETECTORS = {"faster_rcnn": {"roi_head": {"score_thresh": 0.0}}, "retinanet": {"retina_head": {"score_thresh": 0.0}},
             "mask_rcnn": {"roi_head": {"score_thresh": 0.0}}, "fcos": {"fcos_head": {"score_thresh": 0.0}}}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, tiny_shapes):
    from tests.conftest import write_config
    from detimb.config import load_config

    root = tmp_path_factory.mktemp("export")
    out = {}
    for detector, model in DETECTORS.items():
        cfg = load_config(write_config(root, tiny_shapes, detector, model=model,
                                       train={"schedule": {"max_iters": 2}, "eval_interval": 100}))
        Trainer(cfg, root / detector, progress=False).train()
        out[detector] = root / detector / "last.pth"
    # a barely trained RetinaNet scores every anchor alike (its 0.01 prior), and tied scores make
    # top-k keep different anchors in ONNX Runtime and PyTorch: spread its classifier's features
    for one_stage in ("retinanet", "fcos"):
        state = torch.load(out[one_stage], weights_only=True)
        noise = torch.Generator().manual_seed(0)
        for key, value in state["model"].items():
            if key.startswith("head.classification_head.") and key.endswith("weight") and value.dim() == 4:
                value += 0.1 * torch.randn(value.shape, generator=noise)
        torch.save(state, out[one_stage])
    return out


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
@pytest.mark.parametrize("detector", list(DETECTORS))
def test_export_round_trip(checkpoints, tiny_shapes, tmp_path, capsys, detector, fmt):
    if fmt == "onnx":
        needs_extra("onnxruntime", "export")
    image = sorted((tiny_shapes / "val").iterdir())[0]
    out = tmp_path / f"model.{'onnx' if fmt == 'onnx' else 'pt'}"
    assert export.main(["--checkpoint", str(checkpoints[detector]), "--format", fmt, "--out", str(out),
                        "--image", str(image)]) == 0, capsys.readouterr().err
    assert "equal to the eager model's" in capsys.readouterr().out
    # and against detimb's own eager model, not only its torchvision twin
    eager = Predictor.from_checkpoint(checkpoints[detector], score_threshold=0.0).predict(image)
    pixels = torch.from_numpy(np.array(__import__("PIL.Image", fromlist=["Image"]).open(image).convert("RGB")))
    got = export.run_export(out, fmt, pixels.permute(2, 0, 1).float().div(255.0), ["boxes", "labels", "scores"]
                            if detector not in ("retinanet", "fcos") else ["boxes", "scores", "labels"])
    want = {"boxes": eager.boxes, "scores": eager.scores,
            "labels": np.array([Predictor.from_checkpoint(checkpoints[detector]).label_map.label(int(c))
                                for c in eager.category_ids])}
    assert len(eager) > 0 and export.detection_difference(want, got) < 1e-4
    # the file names its classes and their COCO ids (label k is class_names[k - 1])
    if fmt == "onnx":
        import onnx

        metadata = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    else:
        extra = {"detimb.json": ""}
        torch.jit.load(str(out), _extra_files=extra)
        metadata = json.loads(extra["detimb.json"])
    label_map = Predictor.from_checkpoint(checkpoints[detector]).label_map
    assert json.loads(metadata["detimb.class_names"]) == list(label_map.names)
    assert json.loads(metadata["detimb.coco_ids"]) == list(label_map.coco_ids)
    assert "float32 RGB image in [0, 1]" in metadata["detimb.input"]


def test_the_check_reads_a_validation_image_and_refuses_one_without_detections(checkpoints, tiny_shapes, tmp_path,
                                                                              capsys):
    from tests.conftest import write_config

    out = tmp_path / "model.pt"
    assert export.main(["--checkpoint", str(checkpoints["faster_rcnn"]), "--format", "torchscript", "--out",
                        str(out)]) == 0, capsys.readouterr().err
    first = json.loads((tiny_shapes / "annotations/val.json").read_text())["images"][0]["file_name"]
    assert f"detections on {first}" in capsys.readouterr().out
    blind = write_config(tmp_path, tiny_shapes, "faster_rcnn", model={"roi_head": {"score_thresh": 0.9999}})
    out.unlink()
    assert export.main(["--checkpoint", str(checkpoints["faster_rcnn"]), "--config", str(blind), "--format",
                        "torchscript", "--out", str(out)]) == 2
    assert "detects nothing on the check's image" in capsys.readouterr().err and not out.exists()


def test_detection_difference_pairs_detections_as_a_set():
    want = {"boxes": np.array([[0, 0, 1, 1], [5, 5, 6, 6]], float), "scores": np.array([0.5, 0.5]),
            "labels": np.array([1, 2])}
    swapped = {k: v[::-1].copy() for k, v in want.items()}
    assert export.detection_difference(want, swapped) == 0.0
    relabelled = {**swapped, "labels": np.array([1, 2])}  # each box paired with the other label's box
    assert export.detection_difference(want, relabelled) == pytest.approx(5.0)
    moved = {**want, "boxes": want["boxes"] + 0.5}
    assert export.detection_difference(want, moved) == pytest.approx(0.5)


def test_export_refuses_a_segmentation_model(tiny_config, tiny_shapes, tmp_path, capsys):
    from tests.conftest import write_config

    cfg = tiny_config("semantic_seg", model={"head": {"channels": 8}}, train={"schedule": {"max_iters": 1},
                                                                              "eval_interval": 100})
    Trainer(cfg, tmp_path / "seg", progress=False).train()
    assert export.main(["--checkpoint", str(tmp_path / "seg" / "last.pth"), "--format", "torchscript", "--out",
                        str(tmp_path / "x.pt")]) == 2
    assert "export covers detectors" in capsys.readouterr().err and not (tmp_path / "x.pt").exists()
    assert write_config  # the helper is importable for the other tests


def test_export_refuses_an_roi_head_scored_by_sigmoids(tiny_config, tiny_shapes):
    from detimb.data.coco import CocoDetection
    from detimb.errors import DetimbError
    from detimb.models import build_detector
    from detimb.models.export import inference_model

    ds = CocoDetection(tiny_shapes / "annotations/train.json", tiny_shapes / "train")
    model = build_detector(tiny_config("faster_rcnn", model={"roi_head": {"loss_cls": {"type": "binary_cross_entropy"}}}
                                       ).model, ds.label_map)
    with pytest.raises(DetimbError, match="scores by softmax"):
        inference_model(model)
