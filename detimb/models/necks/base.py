"""The neck registry, the extra pyramid levels, and backbone + neck composition."""

from __future__ import annotations

from collections import OrderedDict

from torch import Tensor, nn
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelMaxPool, LastLevelP6P7

from detimb.registry import Registry

NECKS = Registry("neck")


def extra_block(kind: str | None, out_channels: int, top_in_channels: int | None = None) -> ExtraFPNBlock | None:
    """torchvision's extra levels: 'maxpool' (a stride-2 'pool' level, Faster/Mask R-CNN),
    'p6p7' (RetinaNet's two stride-2 convs on P5), 'p6p7_c5' (the same on the backbone's
    top level C5, RetinaNet v2; ``top_in_channels`` its channels) or None."""
    if kind == "maxpool":
        return LastLevelMaxPool()
    if kind == "p6p7":
        return LastLevelP6P7(out_channels, out_channels)
    if kind == "p6p7_c5" and top_in_channels is not None:
        return LastLevelP6P7(top_in_channels, out_channels)
    if kind is None:
        return None
    raise ValueError(f"extra_blocks must be 'maxpool', 'p6p7', 'p6p7_c5' or null, got {kind!r}")


NORMS = {"bn": nn.BatchNorm2d}


def norm_layer(name: str | None) -> type[nn.Module] | None:
    """A neck's norm: None, or 'bn' (the v2 architectures' FPN)."""
    if name is not None and name not in NORMS:
        raise ValueError(f"norm must be null or one of {', '.join(NORMS)}, got {name!r}")
    return None if name is None else NORMS[name]


def select_levels(in_channels_list: list[int], levels: list[int] | None) -> list[int]:
    """Indices of the backbone levels a neck takes (default: all)."""
    chosen = list(range(len(in_channels_list))) if levels is None else list(levels)
    if not chosen or any(not 0 <= i < len(in_channels_list) for i in chosen):
        raise ValueError(f"levels {levels} must index the backbone's {len(in_channels_list)} levels")
    return chosen


def take_levels(features: dict[str, Tensor], levels: list[int]) -> dict[str, Tensor]:
    items = list(features.items())
    return OrderedDict(items[i] for i in levels)


class BackboneWithNeck(nn.Module):
    """Backbone then neck, with the ``out_channels`` torchvision's detectors read, laid out
    as torchvision's ``BackboneWithFPN``: the feature extractor is ``body`` and the neck
    ``fpn`` (every neck is an FPN with, for PANet and BFP, modules of its own added under
    their own names), so a torchvision detector's ``backbone.body.*``/``backbone.fpn.*``
    keys load as they are."""

    def __init__(self, body: nn.Module, neck: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.fpn = neck
        self.out_channels = neck.out_channels

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return self.fpn(OrderedDict(self.body(x)))
