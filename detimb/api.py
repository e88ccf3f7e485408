"""detimb from Python: a predictor from a checkpoint in one line, predictions as arrays,
pictures of them, and the training and evaluation the command-line tools call.

    from detimb import Predictor, draw
    predictor = Predictor.from_checkpoint("work_dirs/demo/best.pth")
    prediction = predictor.predict("image.png")          # or a NumPy array, a PIL image, a list
    picture = draw("image.png", prediction)               # (H, W, 3) uint8 RGB
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import cv2
import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from detimb.config import config_from_yaml, load_config, to_dict
from detimb.data.label_map import LabelMap
from detimb.data.pixels import RGB, PixelSpec, read_raster, to_chw_tensor
from detimb.engine.checkpoint import load_checkpoint, load_model_state
from detimb.engine.drawing import draw_class_map, draw_detections
from detimb.engine.priors import apply_priors
from detimb.errors import DetimbError
from detimb.models.builder import build_model

ImageInput = Union[str, Path, np.ndarray, "Image.Image"]  # noqa: F821 - PIL is optional at type level


class InputError(DetimbError, ValueError):
    """An image handed to the API is missing, not an image, or of the wrong shape or type."""


@dataclass
class Prediction:
    """One image's predictions, in that image's pixels.

    boxes: (N, 4) float32 xyxy. scores: (N,) float32. category_ids: (N,) int64, the
    dataset's COCO category ids. names: N class names. masks: (N, H, W) bool for Mask R-CNN,
    else None. class_map: (H, W) int64 COCO category ids (0 background) for semantic
    segmentation, which has no boxes (N = 0).
    """

    boxes: np.ndarray
    scores: np.ndarray
    category_ids: np.ndarray
    names: list[str]
    masks: np.ndarray | None = None
    class_map: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.boxes)


def load_image(image: ImageInput, color: str = "RGB") -> np.ndarray:
    """(H, W, 3) uint8 RGB from a path, a PIL image, or an (H, W, 3) uint8 array whose
    channel order ``color`` states ('RGB' or 'BGR', as OpenCV reads)."""
    if color not in ("RGB", "BGR"):
        raise InputError(f"color must be 'RGB' or 'BGR', got {color!r}")
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise InputError(f"{path}: no such image file")
        pixels = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if pixels is None:
            raise InputError(f"{path}: not an image OpenCV can decode")
        return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    if type(image).__module__.startswith("PIL."):
        return np.array(image.convert("RGB"))  # type: ignore[union-attr]
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise InputError(f"an image array must be (H, W, 3), got shape {image.shape}")
        if image.dtype != np.uint8:
            raise InputError(f"an image array must be uint8, got {image.dtype}. Fix: convert with"
                             " (array * 255).round().astype(np.uint8) for floats in [0, 1]")
        return np.ascontiguousarray(image[..., ::-1] if color == "BGR" else image)
    raise InputError(f"cannot read an image from a {type(image).__name__}: give a path, a NumPy array or a PIL image")


class Predictor:
    """A trained detector or segmentation model ready to predict (eval mode, no gradient).

    Args:
        model: from ``detimb.models.build_model``. label_map: the classes it was trained on.
        device: 'cpu', 'cuda' or a torch.device (default: CUDA when available).
        score_threshold: detections scoring below it are left out (default 0.05).
        pixels: the bands and scaling the model reads (from the checkpoint's config): a model
            of other than 8-bit RGB input reads image files with rasterio, as in training.
    """

    def __init__(self, model: nn.Module, label_map: LabelMap, device: str | torch.device | None = None,
                 score_threshold: float = 0.05, pixels: PixelSpec = RGB) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.label_map, self.score_threshold, self.pixels = label_map, score_threshold, pixels

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, config: str | Path | None = None,
                        device: str | torch.device | None = None, score_threshold: float = 0.05) -> Predictor:
        """The model of a detimb checkpoint, built from the config stored in it (or ``config``)."""
        state = load_checkpoint(checkpoint)
        cfg: DictConfig = load_config(config) if config else config_from_yaml(state["config"],
                                                                              f"{checkpoint} (its stored config)")
        label_map = LabelMap.from_dict(state["label_map"])
        model = build_model(cfg.model, label_map)
        load_model_state(model, state, to_dict(cfg.model), label_map.num_classes, checkpoint)
        apply_priors(model, cfg, dict(state.get("priors", {})), set_bias=False)
        return cls(model, label_map, device, score_threshold, PixelSpec.from_config(cfg))

    @torch.no_grad()
    def predict(self, images: ImageInput | Sequence[ImageInput], color: str = "RGB",
                batch_size: int = 8) -> Prediction | list[Prediction]:
        """Predictions for one image, or a list of them for a list (run ``batch_size`` at a time)."""
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        pixels = [self._read(im, color) for im in items]  # every input checked before any runs
        out: list[Prediction] = []
        for start in range(0, len(pixels), batch_size):
            batch = [to_chw_tensor(p).to(self.device) for p in pixels[start:start + batch_size]]
            out += [self._to_prediction(o) for o in self.model(batch)]
        return out[0] if single else out

    def _read(self, image: ImageInput, color: str) -> np.ndarray:
        if self.pixels.is_rgb:
            return load_image(image, color)
        if not isinstance(image, (str, Path)):
            raise InputError(f"this model reads {self.pixels.channels}-band rasters (model.in_channels); give a file"
                             " path, which is read with the checkpoint's data.bands and data.scale")
        if not Path(image).is_file():
            raise InputError(f"{image}: no such image file")
        return read_raster(image, self.pixels)

    def _to_prediction(self, output: dict[str, torch.Tensor]) -> Prediction:
        lm = self.label_map
        if "sem_seg" in output:
            labels = output["sem_seg"].argmax(0).cpu().numpy()
            lut = np.array([0] + list(lm.coco_ids), dtype=np.int64)
            return Prediction(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), [],
                              class_map=lut[labels])
        keep = output["scores"] >= self.score_threshold
        labels = output["labels"][keep].cpu().tolist()
        masks = None
        if "masks" in output:
            masks = (output["masks"][keep][:, 0] > 0.5).cpu().numpy()
        return Prediction(output["boxes"][keep].cpu().numpy().astype(np.float32),
                          output["scores"][keep].cpu().numpy().astype(np.float32),
                          np.array([lm.coco_id(int(k)) for k in labels], dtype=np.int64),
                          [lm.names[int(k) - 1] for k in labels], masks)


def draw(image: ImageInput, prediction: Prediction, color: str = "RGB", max_draw: int | None = None,
         names: dict[int, str] | None = None) -> np.ndarray:
    """``image`` with ``prediction`` drawn on it, (H, W, 3) uint8 RGB: boxes and masks with
    class name and score, or a semantic class map as an overlay with a legend (``names``:
    category id -> name for the legend; default the ids)."""
    pixels = load_image(image, color)
    if prediction.class_map is not None:
        return draw_class_map(pixels, prediction.class_map, names or {})
    return draw_detections(pixels, prediction.boxes, prediction.category_ids, prediction.names, prediction.scores,
                           prediction.masks, max_draw)


def save_picture(path: str | Path, picture: np.ndarray) -> None:
    """Write an RGB picture (PNG or JPEG by the suffix), atomically."""
    from detimb.utils import atomic_write

    path = Path(path)

    def write(tmp: str) -> None:
        ok, data = cv2.imencode(path.suffix or ".png", cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        if not ok:
            raise DetimbError(f"cannot encode a picture as {path.suffix}")
        Path(tmp).write_bytes(data.tobytes())

    atomic_write(path, write)


def train(config: str | Path, work_dir: str | Path | None = None, resume: str | Path | None = None,
          load_from: str | Path | None = None, progress: bool = True, **overrides: Any) -> dict[str, Any]:
    """Train from a config file or packaged name, as ``tools/train.py`` does; ``overrides``
    are dotted keys (``**{"train.schedule.max_iters": 100}``, or ``train__schedule__max_iters=100``).
    Returns the final evaluation reports."""
    from detimb.engine import distributed
    from detimb.engine.trainer import Trainer

    items = [f"{k.replace('__', '.')}={_yaml_value(v)}" for k, v in overrides.items()]
    cfg = load_config(config, items)
    run = Path(work_dir or cfg.work_dir or Path("work_dirs") / Path(str(config)).stem)
    try:
        return Trainer(cfg, run, resume=resume, load_from=load_from, progress=progress).train()
    finally:
        distributed.cleanup()


def evaluate(config: str | Path, checkpoint: str | Path | None = None, results: Sequence[str | Path] | None = None,
             out: str | Path | None = None, overrides: Sequence[str] = ()) -> tuple[Path, str]:
    """Evaluate a checkpoint on the config's validation split, or score COCO results files
    against it, as ``tools/eval.py`` does (it calls this). Writes the reports and
    diagnostics to ``out`` (default: ``<checkpoint folder>/eval`` or beside the results) and
    returns that folder and the per-class table."""
    import json

    from detimb.data.coco import CocoDetection
    from detimb.data.coco_validate import read_coco_json, validate_results
    from detimb.data.loader import build_loader, build_val_dataset
    from detimb.engine.coco_eval import class_frequencies, format_table
    from detimb.engine.tasks import evaluate_and_write, make_task
    from detimb.errors import DatasetError
    from detimb.models.builder import is_segmentation

    if (checkpoint is None) == (not results):
        raise DetimbError("evaluate: give a checkpoint or results files (one of the two)")
    cfg = load_config(config, list(overrides))
    train_path = Path(cfg.data.train.ann_file)
    train_freq = class_frequencies(read_coco_json(train_path)) if train_path.is_file() else None
    if checkpoint is not None:
        state = load_checkpoint(checkpoint)
        label_map = LabelMap.from_dict(state["label_map"])
        task = make_task(cfg)
        val_set = build_val_dataset(cfg.data, label_map, is_segmentation(cfg.model))
        model = task.build_model(label_map, None)
        load_model_state(model, state, to_dict(cfg.model), label_map.num_classes, checkpoint)
        apply_priors(model, cfg, dict(state.get("priors", {})), set_bias=False)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        loader = build_loader(val_set, cfg.data.val_batch_size, cfg.data.num_workers, 0, 1, 0)
        folder = Path(out or Path(checkpoint).parent / "eval")
        reports = task.evaluate(model.to(device), loader, device, label_map, train_freq, folder, amp=False,
                                progress=True, error_analysis=True)
        return folder, task.format(reports)
    if is_segmentation(cfg.model):
        raise DetimbError("results files are COCO detection results; evaluate a segmentation model from its"
                          " checkpoint")
    val = CocoDetection(cfg.data.val.ann_file, cfg.data.val.img_dir)
    for message in val.records.warnings:
        print(f"note: {message}", file=sys.stderr)
    records_by_kind: dict[str, list] = {"bbox": [], "segm": []}
    for name in results or []:  # every file checked before anything is scored or written
        path = Path(name)
        if not path.is_file():
            raise DetimbError(f"--results: no file at {path}")
        try:
            records = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise DatasetError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from err
        records_by_kind[validate_results(path, records, val.records.data)] = records
    folder = Path(out or Path(list(results or [])[0]).parent / "eval")
    reports = evaluate_and_write(val.coco, records_by_kind, val.label_map, train_freq, cfg.evaluation, folder,
                                 bool(records_by_kind["segm"]), error_analysis=True)
    return folder, "\n\n".join(format_table(r) for r in reports.values())


def _yaml_value(value: Any) -> str:
    import json

    return json.dumps(value) if not isinstance(value, str) else value


__all__ = ["InputError", "Prediction", "Predictor", "draw", "evaluate", "load_image", "save_picture", "train"]
