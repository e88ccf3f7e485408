"""Libra R-CNN's balanced feature pyramid, stacked on any detimb neck."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detimb.models.necks.base import NECKS
from detimb.models.necks.fpn import FPN
from detimb.models.necks.panet import PANet


class NonLocal2d(nn.Module):
    """Embedded-Gaussian non-local block (Wang et al., CVPR 2018): ``x + W_z(softmax(theta(x)^T
    phi(x)) g(x))``, 1x1 convs, ``inter_channels = channels // reduction``. ``W_z`` starts at
    zero, so the block starts as the identity (as mmdetection's ``zeros_init``). The attention
    logits are unscaled (mmdetection's ``use_scale=False``) and reach thousands, so they and
    their softmax are computed in float32 even under fp16 autocast, where they would overflow."""

    def __init__(self, channels: int, reduction: int = 1) -> None:
        super().__init__()
        inter = max(1, channels // reduction)
        self.theta = nn.Conv2d(channels, inter, 1)
        self.phi = nn.Conv2d(channels, inter, 1)
        self.g = nn.Conv2d(channels, inter, 1)
        self.out = nn.Conv2d(inter, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        theta = self.theta(x).flatten(2).transpose(1, 2)  # (N, HW, C')
        phi = self.phi(x).flatten(2)                      # (N, C', HW)
        g = self.g(x).flatten(2).transpose(1, 2)          # (N, HW, C')
        with torch.autocast(x.device.type, enabled=False):
            attention = torch.softmax(theta.float() @ phi.float(), dim=-1)
            y = (attention @ g.float()).to(g.dtype)        # (N, HW, C')
        return x + self.out(y.transpose(1, 2).reshape(n, -1, h, w))


class _Balanced:
    """Libra's gather-refine-scatter applied to the output of the neck class it is mixed into."""

    refine: nn.Module
    refine_level: int

    def _add_refine(self, refine: str | None, refine_level: int, channels: int) -> None:
        self.refine_level = refine_level
        if refine == "non_local":
            self.refine = NonLocal2d(channels)
        elif refine == "conv":
            self.refine = nn.Sequential(nn.Conv2d(channels, channels, 3, 1, 1), nn.ReLU())
        elif refine in (None, "none"):
            self.refine = nn.Identity()
        else:
            raise ValueError(f"refine must be 'non_local', 'conv' or 'none', got {refine!r}")

    def balance(self, pyramid: dict[str, Tensor]) -> dict[str, Tensor]:
        levels = list(pyramid.values())
        if not 0 <= self.refine_level < len(levels):
            raise ValueError(f"refine_level {self.refine_level} is outside the neck's {len(levels)} levels")
        size = levels[self.refine_level].shape[-2:]
        gathered = [F.adaptive_max_pool2d(x, size) if i < self.refine_level else F.interpolate(x, size=size,
                                                                                                mode="nearest")
                    for i, x in enumerate(levels)]
        balanced = self.refine(torch.stack(gathered).mean(0))
        out = OrderedDict()
        for i, (name, x) in enumerate(pyramid.items()):
            residual = (F.interpolate(balanced, size=x.shape[-2:], mode="nearest") if i < self.refine_level
                        else F.adaptive_max_pool2d(balanced, x.shape[-2:]))
            out[name] = x + residual
        return out


class BalancedFPN(FPN, _Balanced):
    """The balanced pyramid on FPN: FPN's keys, plus ``refine``."""

    def __init__(self, in_channels_list: list[int], refine: str | None = "non_local", refine_level: int = 2,
                 **fpn_args: Any) -> None:
        super().__init__(in_channels_list, **fpn_args)
        self._add_refine(refine, refine_level, self.out_channels)

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:  # type: ignore[override]
        return self.balance(self.pyramid(features))


class BalancedPANet(PANet, _Balanced):
    """The balanced pyramid on PANet: PANet's keys, plus ``refine``."""

    def __init__(self, in_channels_list: list[int], refine: str | None = "non_local", refine_level: int = 2,
                 **panet_args: Any) -> None:
        super().__init__(in_channels_list, **panet_args)
        self._add_refine(refine, refine_level, self.out_channels)

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:  # type: ignore[override]
        return self.balance(self.pyramid(features))


BASES: dict[str, type[FPN]] = {"fpn": BalancedFPN, "panet": BalancedPANet}


@NECKS.register("bfp")
def balanced_feature_pyramid(in_channels_list: list[int], base: str = "fpn", refine: str | None = "non_local",
                             refine_level: int = 2, **base_args: Any) -> FPN:
    """Balanced feature pyramid (Pang et al., Libra R-CNN, CVPR 2019) on top of ``base``.

    Gather: every output level of the base neck is resized to the size of level
    ``refine_level`` (adaptive max pooling for the larger levels, nearest upsampling for the
    smaller ones) and averaged. Refine: ``non_local`` (embedded Gaussian), ``conv`` (3x3 +
    ReLU) or ``none``. Scatter: the refined map is resized back to each level and added to
    it (a residual). Names, shapes and strides are the base neck's, and so are its keys
    (the refinement adds ``refine``). Defaults (Libra's): base='fpn', refine='non_local',
    refine_level=2; other arguments go to the base neck.
    """
    if base not in BASES:
        raise ValueError(f"bfp stacks on {' or '.join(BASES)}, got base={base!r}")
    return BASES[base](in_channels_list, refine=refine, refine_level=refine_level, **base_args)
