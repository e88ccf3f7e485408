"""Optional dependencies: each belongs to an extra, and a feature that needs a missing one
says which extra to install instead of failing with an ImportError."""

from __future__ import annotations

import importlib

from detimb.errors import DetimbError

EXTRAS: dict[str, tuple[str, ...]] = {
    "geo": ("rasterio", "shapely", "pyogrio"),
    "tensorboard": ("tensorboard",),
    "fast-eval": ("faster_coco_eval",),
    "export": ("onnx", "onnxruntime"),
    "ray": ("ray",),
}


class MissingExtraError(DetimbError, ImportError):
    """A feature needs a package of an optional extra that is not installed."""


def require_extra(extra: str, feature: str, modules: tuple[str, ...] | None = None) -> None:
    """Import ``modules`` (default: all of ``extra``'s) or raise a MissingExtraError that
    names ``feature`` and the install command."""
    for module in modules or EXTRAS[extra]:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise MissingExtraError(f"{feature} needs the '{module}' package, which is not installed. Fix: pip install"
                                    f" 'detimb[{extra}]'") from err
