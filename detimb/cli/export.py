"""``tools/export.py``: a trained detector as TorchScript or ONNX, checked against the eager model."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from detimb.cli.common import run_cli
from detimb.data.pixels import load_image, to_chw_tensor
from detimb.errors import DetimbError, InputError
from detimb.data.coco_validate import validate_coco
from detimb.inference.restore import RestoredModel, restore
from detimb.models.export import inference_model
from detimb.optional import require_extra
from detimb.utils import atomic_write, not_an_input

FORMATS = ("onnx", "torchscript")
MIN_OPSET = 11  # torchvision's RoIAlign and NMS export from opset 11 on
TOLERANCE = 1e-4


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Export a trained detector (Faster R-CNN, RetinaNet, FCOS, Mask R-CNN)"
                                            " as TorchScript or ONNX, with its class names and COCO category ids;"
                                            " the export's detections are checked against the eager model's on a"
                                            " real image. Input: one (3, H, W) float32 RGB image in [0, 1].")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--config", help="default: the config stored in the checkpoint")
    p.add_argument("--format", choices=FORMATS, required=True)
    p.add_argument("--out", required=True, help="file to write (.onnx / .pt)")
    p.add_argument("--image", help="test image for the check (default: the first image of the checkpoint's"
                                   " validation split); the model must detect something on it")
    p.add_argument("--opset", type=int, default=17)
    return p.parse_args(argv)


INPUT_CONTRACT = "one (3, H, W) float32 RGB image in [0, 1]; labels 1..K index detimb.class_names"


def export_metadata(restored: RestoredModel) -> dict[str, str]:
    """What the exported file carries besides the graph: the input contract, the class names
    and the COCO category id of each label (label k is ``class_names[k - 1]``)."""
    return {"detimb.input": INPUT_CONTRACT, "detimb.class_names": json.dumps(list(restored.label_map.names)),
            "detimb.coco_ids": json.dumps(list(restored.label_map.coco_ids)),
            "detimb.checkpoint": restored.source.name}


def _save_onnx(twin: torch.nn.Module, image: torch.Tensor, tmp: str, opset: int, names: list[str],
               metadata: dict[str, str]) -> None:
    import onnx  # the export extra, checked by the caller

    torch.onnx.export(twin, ([image],), tmp, opset_version=opset, dynamo=False, input_names=["image"],
                      output_names=names,
                      dynamic_axes={"image": {1: "height", 2: "width"}, **{n: {0: "detections"} for n in names}})
    model = onnx.load(tmp)
    onnx.helper.set_model_props(model, metadata)
    onnx.save(model, tmp)


def export(predictor_model: torch.nn.Module, fmt: str, out: Path, image: torch.Tensor, opset: int = 17,
           metadata: dict[str, str] | None = None) -> tuple[torch.nn.Module, list[str]]:
    """Write ``out`` with ``metadata`` (ONNX: the model's metadata_props; TorchScript: the
    extra file ``detimb.json``); returns the exported torchvision twin and its output names."""
    metadata = metadata or {}
    twin = inference_model(predictor_model, masks=fmt == "torchscript")
    with torch.no_grad():
        names = list(twin([image])[0].keys())
    if fmt == "torchscript":
        try:
            scripted = torch.jit.script(twin)
        except Exception as err:  # noqa: BLE001 - TorchScript names the module it cannot compile
            raise DetimbError(f"this model cannot be scripted: {str(err).splitlines()[0][:300]}") from err
        atomic_write(out, lambda tmp: scripted.save(tmp, _extra_files={"detimb.json": json.dumps(metadata)}))
        return twin, names
    require_extra("export", "--format onnx", ("onnx",))
    atomic_write(out, lambda tmp: _save_onnx(twin, image, tmp, opset, names, metadata))
    return twin, names


def run_export(path: Path, fmt: str, image: torch.Tensor, names: list[str]) -> dict[str, np.ndarray]:
    """The exported file's detections on ``image``, as detimb reports them: without label 0,
    which torchvision's one-stage models (the exported graph) can emit for the background
    column their sigmoid classifier keeps; detimb's own models drop those."""
    if fmt == "torchscript":
        module = torch.jit.load(str(path))
        with torch.no_grad():
            _, detections = module([image])
        return without_background({k: v.numpy() for k, v in detections[0].items()})
    require_extra("export", "checking the ONNX export", ("onnxruntime",))
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return without_background(dict(zip(names, session.run(None, {session.get_inputs()[0].name: image.numpy()}))))


def without_background(detections: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    keep = detections["labels"] > 0
    return {k: v[keep] for k, v in detections.items()}


def detection_difference(want: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> float:
    """The largest box or score difference after pairing each exported detection with an
    unused eager one of the same label (greedy, nearest first): detections are a set, and
    scores that tie (an untrained head's prior) may come out in another order."""
    if len(want["boxes"]) != len(got["boxes"]):
        return float("inf")
    rows_w = np.concatenate([want["boxes"], want["scores"][:, None]], axis=1).astype(np.float64)
    rows_g = np.concatenate([got["boxes"], got["scores"][:, None]], axis=1).astype(np.float64)
    used = np.zeros(len(rows_w), dtype=bool)
    worst = 0.0
    for i in np.argsort(-rows_g[:, -1], kind="stable"):
        cost = np.abs(rows_w - rows_g[i]).max(axis=1)
        cost[used | (want["labels"] != got["labels"][i])] = np.inf
        j = int(np.argmin(cost)) if len(cost) else -1
        if j < 0 or not np.isfinite(cost[j]):
            return float("inf")
        used[j] = True
        worst = max(worst, float(cost[j]))
    return worst


def check_image(restored: RestoredModel, given: str | None) -> Path:
    """The check's image: ``--image``, else the first image of the checkpoint's validation split."""
    if given:
        return Path(given)
    val = restored.config.data.val
    try:
        first = validate_coco(val.ann_file, val.img_dir).images[0]
    except (DetimbError, IndexError, OSError) as err:
        raise InputError(f"--image: the check needs a real image, and the checkpoint's validation split"
                         f" ({val.ann_file}) gives none ({str(err).splitlines()[0] if str(err) else 'no images'})."
                         " Fix: give --image with objects the model detects") from err
    return Path(val.img_dir) / first["file_name"]


def export_command(args: argparse.Namespace) -> None:
    out = not_an_input(args.out, [args.checkpoint, args.config, args.image], "--out")
    if not args.opset >= MIN_OPSET:
        raise InputError(f"--opset {args.opset}: the export needs opset {MIN_OPSET} or newer (torchvision's detection"
                         " operators); the default is 17")
    restored = restore(args.checkpoint, config=args.config, device="cpu")
    source = check_image(restored, args.image)
    image = to_chw_tensor(load_image(source))
    twin, names = export(restored.model, args.format, out, image, args.opset, export_metadata(restored))
    with torch.no_grad():
        want = without_background({k: v.numpy() for k, v in twin([image])[0].items() if k in names})
    if len(want["boxes"]) == 0:
        out.unlink(missing_ok=True)
        raise DetimbError(f"{source}: the model detects nothing on the check's image, so comparing the export with it"
                          " could not fail; nothing was written. Fix: give --image with objects the model detects")
    got = run_export(out, args.format, image, names)
    if len(got["boxes"]) != len(want["boxes"]):
        out.unlink(missing_ok=True)
        raise DetimbError(f"{out}: the export gives {len(got['boxes'])} detections, the eager model"
                          f" {len(want['boxes'])}")
    diff = detection_difference(want, got)
    if diff > TOLERANCE:
        out.unlink(missing_ok=True)
        raise DetimbError(f"{out}: the export's detections differ from the eager model's by {diff:.2e}"
                          f" (> {TOLERANCE})")
    print(f"{args.format} written to {out}: {len(want['boxes'])} detections on {source.name}, equal to the eager"
          f" model's within {diff:.1e}; {len(restored.label_map.names)} class names and COCO ids in its metadata")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_cli(lambda: export_command(args))


if __name__ == "__main__":
    sys.exit(main())
