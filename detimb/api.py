"""detimb from Python: the facade over the rooms below it (it defines nothing).

    import detimb
    result = detimb.train("detimb://demo/faster_rcnn_shapes", overrides={"train.schedule.max_iters": 100})
    predictor = detimb.Predictor.from_checkpoint(result.work_dir / "best.pth")
    prediction = predictor.predict("image.png")           # or a NumPy array, a PIL image, a list
    picture = detimb.draw("image.png", prediction)         # (H, W, 3) uint8 RGB
    detimb.evaluate("my_data.yaml", checkpoint="run/best.pth")

``train`` and ``evaluate`` take ``overrides`` the same way: a list of ``key=value`` strings
(as ``--cfg-options``) or a mapping of dotted keys to values.
"""

from __future__ import annotations

from detimb.data.pixels import load_image
from detimb.data.prediction import Prediction
from detimb.engine.run import TrainingResult, train
from detimb.errors import DetimbError, InputError
from detimb.evaluation.run import EvaluationResult, evaluate
from detimb.inference.predictor import ImageInput, Predictor
from detimb.inference.restore import RestoredModel, restore
from detimb.sweeps.results import SweepResult
from detimb.sweeps.run import sweep
from detimb.visualization import draw, save_picture

__all__ = ["DetimbError", "EvaluationResult", "ImageInput", "InputError", "Prediction", "Predictor", "RestoredModel",
           "SweepResult", "TrainingResult", "draw", "evaluate", "load_image", "restore", "save_picture", "sweep",
           "train"]
