"""Necks: multi-level backbone features -> same-width pyramid ``OrderedDict[str, Tensor]``.

Every neck keeps FPN's output names and strides, so every detector accepts every neck.
"""

from detimb.models.necks.base import NECKS, BackboneWithNeck
from detimb.models.necks.bfp import BalancedFPN, BalancedPANet, balanced_feature_pyramid
from detimb.models.necks.fpn import FPN
from detimb.models.necks.panet import PANet

__all__ = ["FPN", "NECKS", "BackboneWithNeck", "BalancedFPN", "BalancedPANet", "PANet", "balanced_feature_pyramid"]
