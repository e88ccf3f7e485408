"""Necks: multi-level backbone features -> same-width pyramid ``OrderedDict[str, Tensor]``."""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool, LastLevelP6P7

from detimb.registry import Registry

NECKS = Registry("neck")


@NECKS.register("fpn")
class FPN(nn.Module):
    """Feature Pyramid Network (Lin et al., CVPR 2017): ``torchvision.ops.FeaturePyramidNetwork``.

    ``extra_blocks``: 'maxpool' (torchvision's Faster/Mask R-CNN: a stride-2 max-pooled
    'pool' level), 'p6p7' (RetinaNet's two stride-2 convs) or None. Defaults:
    out_channels=256, extra_blocks='maxpool', levels=None (every backbone level; RetinaNet
    takes [1, 2, 3], i.e. C3-C5, as torchvision does). ``in_channels_list`` comes from the
    backbone.
    """

    def __init__(self, in_channels_list: list[int], out_channels: int = 256,
                 extra_blocks: str | None = "maxpool", levels: list[int] | None = None) -> None:
        super().__init__()
        self.levels = list(range(len(in_channels_list))) if levels is None else list(levels)
        if not self.levels or any(not 0 <= i < len(in_channels_list) for i in self.levels):
            raise ValueError(f"levels {levels} must index the backbone's {len(in_channels_list)} levels")
        in_channels_list = [in_channels_list[i] for i in self.levels]
        if extra_blocks == "maxpool":
            extra: nn.Module | None = LastLevelMaxPool()
        elif extra_blocks == "p6p7":
            extra = LastLevelP6P7(out_channels, out_channels)
        elif extra_blocks is None:
            extra = None
        else:
            raise ValueError(f"extra_blocks must be 'maxpool', 'p6p7' or null, got {extra_blocks!r}")
        self.fpn = FeaturePyramidNetwork(list(in_channels_list), out_channels, extra_blocks=extra)
        self.out_channels = out_channels

    def forward(self, features: "OrderedDict[str, Tensor]") -> "OrderedDict[str, Tensor]":
        items = list(features.items())
        return self.fpn(OrderedDict(items[i] for i in self.levels))


class BackboneWithNeck(nn.Module):
    """Backbone then neck, with the ``out_channels`` torchvision's detectors read."""

    def __init__(self, body: nn.Module, neck: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.neck = neck
        self.out_channels = neck.out_channels

    def forward(self, x: Tensor) -> "OrderedDict[str, Tensor]":
        return self.neck(self.body(x))
