"""detimb: swappable remedies for class and sample imbalance in object detection.

The Python API (``detimb.api``): ``train(config, overrides=...)``, ``evaluate(config,
checkpoint=...)``, ``Predictor.from_checkpoint(path).predict(image)``, ``draw(image, prediction)``.
"""

__version__ = "0.1.0"

_API = ("DetimbError", "EvaluationResult", "ImageInput", "InputError", "Prediction", "Predictor", "RestoredModel",
        "SweepResult", "TrainingResult", "sweep", "draw", "evaluate", "load_image", "restore", "save_picture", "train")


# The API on first use (PEP 562), so that ``import detimb`` and every submodule import stay
# light (no torch). This is the one import that runs downward from the package's root to its
# facade; the import-graph test allows it by name.
def __getattr__(name: str):
    if name in _API:
        from detimb import api

        return getattr(api, name)
    raise AttributeError(f"module 'detimb' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The API beside the module's own names: ``dir(detimb)`` lists it, and ``help(detimb)``
    (which walks ``dir``) documents ``Predictor``, ``train``, ``evaluate`` ... themselves."""
    return sorted({*globals(), *_API})


__all__ = ["__version__", *_API]
