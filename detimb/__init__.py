"""detimb: swappable remedies for class and sample imbalance in object detection.

The Python API (``detimb.api``): ``Predictor.from_checkpoint(path).predict(image)``,
``draw(image, prediction)``, ``train(config, **overrides)``, ``evaluate(config, checkpoint=...)``.
"""

__version__ = "0.1.0"

_API = ("InputError", "Prediction", "Predictor", "draw", "evaluate", "load_image", "save_picture", "train")


def __getattr__(name: str):  # the API on first use: ``import detimb`` stays light (no torch)
    if name in _API:
        from detimb import api

        return getattr(api, name)
    raise AttributeError(f"module 'detimb' has no attribute {name!r}")


__all__ = ["__version__", *_API]
