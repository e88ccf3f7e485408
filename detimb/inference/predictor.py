"""``Predictor``: a trained model that takes images (paths, arrays, PIL images) and returns
``Prediction`` arrays in each image's pixels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import torch
from torch import nn

from detimb.data.label_map import LabelMap
from detimb.data.pixels import RGB, PixelSpec, load_image, read_raster, to_chw_tensor
from detimb.data.prediction import Prediction
from detimb.data.tiling.grid import overlap_pixels
from detimb.errors import InputError
from detimb.distributed import resolve_device
from detimb.inference.merge import MATCHES, MERGES
from detimb.inference.restore import restore
from detimb.optional import require_extra

if TYPE_CHECKING:  # sliced inference needs the geo extra (rasterio), imported once it is checked
    from detimb.inference.sliced import ScenePrediction

ImageInput = Union[str, Path, np.ndarray, Any]  # Any: a PIL image (PIL is not a dependency)


class Predictor:
    """A trained detector or segmentation model ready to predict (eval mode, no gradient).

    Args:
        model: from ``detimb.models.build_model``. label_map: the classes it was trained on.
        device: 'cpu', 'cuda' or a torch.device (default: CUDA when available).
        score_threshold: detections scoring below it are left out (default 0.05).
        pixels: the bands and scaling the model reads (from the checkpoint's config): a model
            of other than 8-bit RGB input reads image files with rasterio, as in training.
    """

    def __init__(self, model: nn.Module, label_map: LabelMap, *, device: str | torch.device | None = None,
                 score_threshold: float = 0.05, pixels: PixelSpec = RGB) -> None:
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.label_map, self.score_threshold, self.pixels = label_map, score_threshold, pixels

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, config: str | Path | None = None, *,
                        device: str | torch.device | None = None, score_threshold: float = 0.05) -> Predictor:
        """The model of a detimb checkpoint, built from the config stored in it (or ``config``)."""
        restored = restore(checkpoint, config=config, device=device)
        return cls(restored.model, restored.label_map, device=restored.device, score_threshold=score_threshold,
                   pixels=restored.pixels)

    @torch.no_grad()
    def predict(self, images: ImageInput | Sequence[ImageInput], *, color: str = "RGB",
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

    @torch.no_grad()
    def predict_scene(self, path: str | Path, *, tile: int | tuple[int, int] = 512, overlap: float = 0.2,
                      batch_size: int = 4, full_image: bool = False, merge: str = "greedy_nmm", match: str = "ios",
                      match_threshold: float = 0.5, class_agnostic: bool = False) -> ScenePrediction:
        """Sliced inference over a large scene (``detimb-infer``'s, the ``geo`` extra): the
        scene read tile by tile (``tile`` px, ``overlap`` a ratio below 1 or pixels), the
        detections merged back (``merge`` nms | greedy_nmm, by ``match`` iou | ios above
        ``match_threshold``) in scene pixels, with the scene's georeferencing; labels are
        1..K of ``label_map``. ``scene_features`` gives them in map coordinates."""
        require_extra("geo", "Predictor.predict_scene (sliced inference)", ("rasterio",))
        from detimb.inference.sliced import SliceSettings, sliced_predict

        size = (tile, tile) if isinstance(tile, int) else tuple(tile)
        if len(size) != 2 or min(size) < 1:
            raise InputError(f"tile must be a size >= 1 pixel or (h, w), got {tile}")
        overlap_pixels(overlap, min(size))  # the grid's own check, before any tile runs (an OptionError)
        if merge not in MERGES or match not in MATCHES or not 0.0 <= match_threshold <= 1.0:
            raise InputError(f"merge must be one of {MERGES}, match one of {MATCHES} and match_threshold in [0, 1];"
                             f" got {merge!r}, {match!r}, {match_threshold}")
        if not Path(path).is_file():
            raise InputError(f"{path}: no such scene file")
        settings = SliceSettings(size=size, overlap=overlap, batch_size=batch_size, full_image=full_image,  # type: ignore[arg-type]
                                 method=merge, match=match, threshold=match_threshold, class_agnostic=class_agnostic,
                                 score_threshold=self.score_threshold, pixels=self.pixels)
        return sliced_predict(self.model, path, settings, self.device)

    def scene_features(self, prediction: ScenePrediction, *, wgs84: bool = False) -> list[dict[str, Any]]:
        """``predict_scene``'s detections as GeoJSON features in the scene's CRS (or WGS84
        longitude/latitude), with class name, COCO category id and score."""
        require_extra("geo", "Predictor.scene_features", ("rasterio",))
        from detimb.inference.geo import detection_features

        if prediction.crs is None:
            raise InputError("the scene has no CRS, so its detections have no map coordinates; use"
                             " prediction.boxes (scene pixels)")
        return detection_features(prediction, self.label_map, wgs84)

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
