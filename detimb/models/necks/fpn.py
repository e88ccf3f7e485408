"""Feature Pyramid Network: torchvision's, with a choice of backbone levels."""

from __future__ import annotations

from collections import OrderedDict

import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import FeaturePyramidNetwork

from detimb.models.necks.base import NECKS, extra_block, norm_layer, select_levels, take_levels


@NECKS.register("fpn")
class FPN(FeaturePyramidNetwork):
    """Feature Pyramid Network (Lin et al., CVPR 2017): ``torchvision.ops.FeaturePyramidNetwork``
    itself (its ``inner_blocks``/``layer_blocks``/``extra_blocks`` keys), taking the backbone
    levels ``levels``.

    ``extra_blocks``: 'maxpool' (torchvision's Faster/Mask R-CNN: a stride-2 max-pooled
    'pool' level), 'p6p7' (RetinaNet's two stride-2 convs on P5), 'p6p7_c5' (on C5,
    RetinaNet v2) or None. ``norm``: null or 'bn' (BatchNorm after each conv, the v2
    architectures). Defaults: out_channels=256, extra_blocks='maxpool', levels=None (every
    backbone level; RetinaNet takes [1, 2, 3], i.e. C3-C5, as torchvision does),
    norm=None. ``in_channels_list`` comes from the backbone.
    """

    def __init__(self, in_channels_list: list[int], out_channels: int = 256,
                 extra_blocks: str | None = "maxpool", levels: list[int] | None = None,
                 norm: str | None = None) -> None:
        chosen = select_levels(in_channels_list, levels)
        inputs = [in_channels_list[i] for i in chosen]
        super().__init__(inputs, out_channels, extra_blocks=extra_block(extra_blocks, out_channels, inputs[-1]),
                         norm_layer=norm_layer(norm))
        self.levels = chosen
        self.out_channels = out_channels

    def top_down(self, inputs: dict[str, Tensor]) -> list[Tensor]:
        """FPN's outputs P_i before the extra levels: torchvision's ``FeaturePyramidNetwork.
        forward`` step for step (written out because TorchScript has no ``super()``)."""
        x = list(inputs.values())
        last_inner = self.get_result_from_inner_blocks(x[-1], -1)
        results = [self.get_result_from_layer_blocks(last_inner, -1)]
        for idx in range(len(x) - 2, -1, -1):
            lateral = self.get_result_from_inner_blocks(x[idx], idx)
            last_inner = lateral + F.interpolate(last_inner, size=lateral.shape[-2:], mode="nearest")
            results.insert(0, self.get_result_from_layer_blocks(last_inner, idx))
        return results

    def pyramid(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        """The neck's output levels (what subclasses change; torchvision's FPN forward here)."""
        inputs = take_levels(features, self.levels)
        return self.with_extra_levels(inputs, self.top_down(inputs))

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:  # type: ignore[override]
        return self.pyramid(features)

    def with_extra_levels(self, inputs: dict[str, Tensor], outs: list[Tensor]) -> dict[str, Tensor]:
        """``outs`` (one per input level) named as the inputs, plus the extra levels."""
        names = list(inputs)
        if self.extra_blocks is not None:
            outs, names = self.extra_blocks(outs, list(inputs.values()), names)
        return OrderedDict([(k, v) for k, v in zip(names, outs)])
