"""Classification, segmentation and box regression losses, and objective balancers."""

from detimb.losses.balancers import BALANCERS, CARL, BalanceContext, FixedWeights, GuidedLoss, init_classification_prior
from detimb.losses.classification import (
    CLS_LOSSES, BatchClasses, BinaryCrossEntropyLoss, ClassificationLoss, Columns, CrossEntropyLoss, Form,
    SigmoidFocalLoss,
)
from detimb.losses.class_margin import EffectiveClassMarginLoss
from detimb.losses.equalized_focal import EqualizedFocalLoss
from detimb.losses.ghm import GHMCLoss, GHMRLoss
from detimb.losses.long_tail import EQLLoss, EQLv2Loss, FederatedLoss, SeesawLoss
from detimb.losses.statistics import ClassStatistics
from detimb.losses.segmentation import (
    AsymmetricFocalLoss, AsymmetricLargeMarginLoss, DiceLoss, FocalLoss, binary_as_two_class,
)
from detimb.losses.regression import (
    BOX_LOSSES, BalancedL1Loss, BoundedIoULoss, BoxLoss, CIoULoss, DIoULoss, GIoULoss, IoULoss, L1Loss, SmoothL1Loss,
)

__all__ = [
    "BALANCERS", "BOX_LOSSES", "CARL", "CLS_LOSSES", "AsymmetricFocalLoss", "AsymmetricLargeMarginLoss",
    "BalanceContext", "BalancedL1Loss", "BatchClasses", "BinaryCrossEntropyLoss", "ClassStatistics", "Columns",
    "EQLLoss", "EQLv2Loss", "EffectiveClassMarginLoss", "EqualizedFocalLoss", "FederatedLoss", "GHMCLoss",
    "GHMRLoss", "SeesawLoss", "BoundedIoULoss", "BoxLoss",
    "CIoULoss",
    "ClassificationLoss", "CrossEntropyLoss", "Form",
    "DIoULoss", "DiceLoss", "FixedWeights", "FocalLoss", "GIoULoss", "GuidedLoss", "IoULoss", "L1Loss",
    "SigmoidFocalLoss", "SmoothL1Loss", "binary_as_two_class", "init_classification_prior",
]
