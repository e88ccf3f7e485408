"""Classification and box regression losses, and objective balancers."""

from detimb.losses.balancers import BALANCERS, FixedWeights
from detimb.losses.classification import CLS_LOSSES, BinaryCrossEntropyLoss, CrossEntropyLoss, SigmoidFocalLoss
from detimb.losses.regression import BOX_LOSSES, L1Loss, SmoothL1Loss

__all__ = [
    "BALANCERS", "BOX_LOSSES", "CLS_LOSSES", "BinaryCrossEntropyLoss", "CrossEntropyLoss", "FixedWeights",
    "L1Loss", "SigmoidFocalLoss", "SmoothL1Loss",
]
