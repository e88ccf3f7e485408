"""What a model reads: the bands of an image and how their values become the model's input.

``PixelSpec`` comes from the config (``data.bands``, ``data.scale``, ``model.in_channels``)
and travels with the checkpoint in its config, so training, ``tools/infer.py`` and the
Python API read a scene the same way. The default (3 channels, no bands or scale named) is
the RGB path every detector had: 8-bit colour images read by OpenCV, divided by 255.
A raster scene an RGB model reads (sliced inference) is on that same 8-bit scale whatever
its storage type: uint8, uint16 or float32 copies of the same 0-255 values give the same
input, and values outside 0-255 are a named error (the model never saw them), where
dividing by each type's own maximum read a uint16 copy as near black and a float copy as
200 times too bright.
Anything else reads the file with rasterio and keeps its bands and dtype: the named bands
(1-based) or all of them, scaled by ``(x - lo) / (hi - lo)`` when ``scale`` is given, else
integers by their type's maximum (uint16 by 65535) and floats as they are.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor

from detimb.errors import DatasetError, InputError


class PixelSpecError(ValueError):
    """An impossible input setting; ``key`` is the config key that states it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class PixelSpec:
    """bands: 1-based band indices, or None for every band. scale: (lo, hi) or None.
    channels: the model's input channels (``model.in_channels``)."""

    bands: tuple[int, ...] | None = None
    scale: tuple[float, float] | None = None
    channels: int = 3

    def __post_init__(self) -> None:
        if self.channels < 1:
            raise PixelSpecError("model.in_channels", f"model.in_channels must be >= 1, got {self.channels}")
        if self.bands is not None and (not self.bands or min(self.bands) < 1):
            raise PixelSpecError("data.bands", f"data.bands are 1-based band indices, got {list(self.bands)}")
        if self.bands is not None and len(self.bands) != self.channels:
            raise PixelSpecError("data.bands", f"data.bands names {len(self.bands)} bands but model.in_channels is"
                                 f" {self.channels}; give as many bands as input channels")
        if self.scale is not None and not (len(self.scale) == 2 and self.scale[1] > self.scale[0]):
            raise PixelSpecError("data.scale", f"data.scale must be [lo, hi] with hi > lo, got {list(self.scale)}")

    @classmethod
    def from_config(cls, cfg: Any) -> PixelSpec:
        """From a full config (``cfg.data.bands``, ``cfg.data.scale``, ``cfg.model.in_channels``)."""
        bands = cfg.data.bands
        scale = cfg.data.scale
        return cls(None if bands is None else tuple(int(b) for b in bands),
                   None if scale is None else tuple(float(v) for v in scale), int(cfg.model.in_channels))

    @property
    def is_rgb(self) -> bool:
        """The 8-bit colour path (OpenCV, divided by 255)."""
        return self.bands is None and self.scale is None and self.channels == 3

    def convert(self, pixels: np.ndarray, source: str) -> np.ndarray:
        """(bands, H, W) raster values -> (channels, H, W) float32 model input; a band count
        other than ``channels`` is a named error."""
        if pixels.shape[0] != self.channels:
            raise DatasetError(f"{source}: has {pixels.shape[0]} bands but the model takes {self.channels}"
                               " (model.in_channels). Fix: choose the bands with data.bands, or train a model with"
                               f" in_channels: {pixels.shape[0]}")
        x = pixels.astype(np.float32)
        if self.is_rgb:
            return _eight_bit(x, pixels.dtype, source)
        if self.scale is not None:
            lo, hi = self.scale
            return (x - lo) / (hi - lo)
        if np.issubdtype(pixels.dtype, np.integer):
            return x / float(np.iinfo(pixels.dtype).max)
        warnings.warn(f"{source}: float values read as they are: the model states no range (data.scale). State the"
                      " range it was trained on to read other rasters alike", stacklevel=2)
        return x


def check_eight_bit(x: np.ndarray, dtype: np.dtype, source: str, error: type[Exception] = DatasetError) -> None:
    """The one rule for pixels an RGB model reads from a file of another type than uint8
    (uint16, float32, ...): values 0-255 are read as they are; others are refused, naming
    the file and its range (the model's training images were 8-bit)."""
    if x.size and dtype != np.uint8:
        lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
        if not np.isfinite(x).all() or lo < 0 or hi > 255:
            raise error(f"{source}: {np.dtype(dtype).name} values span {lo:g} to {hi:g}, outside the 0-255 an RGB"
                        " model reads (its training images were 8-bit). Fix: rescale it to 0-255 (16-bit: its own"
                        " range, or x >> 8), or train a model that states its range (data.scale: [lo, hi])")


def _eight_bit(x: np.ndarray, dtype: np.dtype, source: str) -> np.ndarray:
    """Values on the 8-bit scale an RGB model was trained on, divided by 255; others refused;
    a float raster whose values all lie within [0, 1] is read as asked, with a warning (it
    may have been scaled to [0, 1], which reads as near black)."""
    check_eight_bit(x, dtype, source)
    if x.size and np.issubdtype(dtype, np.floating) and float(x.max()) <= 1.0:
        warnings.warn(f"{source}: float values within [0, 1], read on the 0-255 scale an RGB model takes (near"
                      " black). If the raster was scaled to [0, 1], multiply it by 255", stacklevel=3)
    return x / 255.0


def as_uint8(values: np.ndarray, source: str, error: type[Exception] = InputError) -> np.ndarray:
    """Pixels of any type as uint8 under ``check_eight_bit``'s rule."""
    if values.dtype == np.uint8:
        return values
    check_eight_bit(values, values.dtype, source, error)
    return np.rint(values).astype(np.uint8)


def read_raster(path: str | Path, spec: PixelSpec) -> np.ndarray:
    """(H, W, channels) float32 model input of a whole image file read by rasterio."""
    import rasterio

    try:
        with rasterio.open(path) as src:
            pixels = src.read(list(spec.bands) if spec.bands is not None else None)
    except rasterio.errors.RasterioIOError as err:
        raise DatasetError(f"{path}: cannot be read as a raster ({err}). Fix: restore the file or remove its"
                           " record") from err
    except IndexError as err:
        raise DatasetError(f"{path}: has no band among {list(spec.bands or [])} (data.bands)") from err
    return np.ascontiguousarray(spec.convert(pixels, str(path)).transpose(1, 2, 0))


def to_chw_tensor(image: np.ndarray, *, keep_uint8: bool = False) -> Tensor:
    """(H, W, C) image -> (C, H, W) model input: uint8 RGB divided by 255 (or, with
    ``keep_uint8``, left uint8: a quarter of the bytes to pass between loader processes and
    to copy to the device, where the model's transform divides it,
    ``detimb.models.transform.float_image``), a float model input (``read_raster``) as it is."""
    x = torch.from_numpy(np.ascontiguousarray(image) if image.flags.writeable else image.copy()).permute(2, 0, 1)
    if image.dtype == np.uint8:
        return x.contiguous() if keep_uint8 else x.float().div_(255.0)
    return x.float()


def display_rgb(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 for pictures: an RGB image as it is, a float model input's first three
    channels (one channel repeated) clipped to [0, 1]."""
    if image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        return image
    x = image if image.ndim == 3 else image[..., None]
    x = np.repeat(x[..., :1], 3, axis=2) if x.shape[2] < 3 else x[..., :3]
    return (np.clip(x, 0.0, 1.0) * 255).round().astype(np.uint8)


RGB = PixelSpec()  # the 8-bit colour default


def _nonempty(pixels: np.ndarray) -> np.ndarray:
    if pixels.shape[0] < 1 or pixels.shape[1] < 1:
        raise InputError(f"an image of {pixels.shape[0]} x {pixels.shape[1]} pixels has nothing to detect in")
    return pixels


def _from_pil(image: Any) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a PIL image of any mode, on the scale a path would be read on:
    PIL's own ``convert("RGB")`` clips 16-bit grey to 255 and truncates float images in
    [0, 1] to 0. 16-bit values are read as a 16-bit file is (``check_eight_bit``: 0-255 as
    they are, others refused); float images must lie in [0, 1] (scaled by 255) and 32-bit
    integer ones in 0-255."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        grey = as_uint8(np.asarray(image), f"a PIL image of mode {mode}")
    elif mode == "F":
        values = np.asarray(image, dtype=np.float32)
        if values.size and (not np.isfinite(values).all() or values.min() < 0 or values.max() > 1):
            raise InputError(f"a mode-F (float) PIL image must hold values in [0, 1]; this one spans"
                             f" {np.nanmin(values):g} to {np.nanmax(values):g}. Fix: scale it to [0, 1], or give uint8")
        grey = (values * 255).round().astype(np.uint8)
    elif mode == "I":
        values = np.asarray(image)
        if values.size and (values.min() < 0 or values.max() > 255):
            raise InputError(f"a mode-I (32-bit integer) PIL image must hold values in 0-255; this one spans"
                             f" {values.min()} to {values.max()}. Fix: convert it to 8 bits with its own range")
        grey = values.astype(np.uint8)
    else:
        return np.array(image.convert("RGB"))
    return np.repeat(grey[..., None], 3, axis=2)


def load_image(image: str | Path | np.ndarray | Any, color: str = "RGB") -> np.ndarray:
    """(H, W, 3) uint8 RGB from a path, a PIL image, or an (H, W, 3) uint8 array whose
    channel order ``color`` states ('RGB' or 'BGR', as OpenCV reads). A file or PIL image of
    another type than 8 bits (uint16, float32) follows ``check_eight_bit``: the same 0-255
    pixels read the same whatever they are stored as."""
    if color not in ("RGB", "BGR"):
        raise InputError(f"color must be 'RGB' or 'BGR', got {color!r}")
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.is_file():
            raise InputError(f"{path}: no such image file")
        pixels = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)  # 16-bit and float kept as such
        if pixels is None:
            raise InputError(f"{path}: not an image OpenCV can decode")
        return cv2.cvtColor(as_uint8(pixels, str(path)), cv2.COLOR_BGR2RGB)
    if type(image).__module__.startswith("PIL."):
        return _nonempty(_from_pil(image))
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise InputError(f"an image array must be (H, W, 3), got shape {image.shape}")
        _nonempty(image)
        if image.dtype != np.uint8:
            raise InputError(f"an image array must be uint8, got {image.dtype}. Fix: convert with"
                             " (array * 255).round().astype(np.uint8) for floats in [0, 1]")
        return np.ascontiguousarray(image[..., ::-1] if color == "BGR" else image)
    raise InputError(f"cannot read an image from a {type(image).__name__}: give a path, a NumPy array or a PIL image")
