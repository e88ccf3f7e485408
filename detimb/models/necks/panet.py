"""PANet's neck: FPN's top-down path followed by a bottom-up path augmentation."""

from __future__ import annotations

from collections import OrderedDict

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork

from detimb.models.necks.base import NECKS, extra_block, select_levels, take_levels


@NECKS.register("panet")
class PANet(nn.Module):
    """Path Aggregation Network neck (Liu et al., CVPR 2018).

    After torchvision's FPN (P2..P5), a bottom-up path: ``N2 = P2``,
    ``N(i+1) = ReLU(conv3x3(ReLU(conv3x3_stride2(N_i)) + P(i+1)))``, so low-level detail
    reaches the top levels through a short path. Output names and strides equal FPN's,
    including the extra level (``extra_blocks`` 'maxpool' pools N5; 'p6p7' builds on N5).
    Defaults: out_channels=256, extra_blocks='maxpool', levels=None. Adaptive feature
    pooling, PANet's other half, is an option of the RoI head
    (``model.roi_head.adaptive_pooling``).
    """

    def __init__(self, in_channels_list: list[int], out_channels: int = 256,
                 extra_blocks: str | None = "maxpool", levels: list[int] | None = None) -> None:
        super().__init__()
        self.levels = select_levels(in_channels_list, levels)
        self.fpn = FeaturePyramidNetwork([in_channels_list[i] for i in self.levels], out_channels)
        n = len(self.levels)
        self.down = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, 2, 1) for _ in range(n - 1))
        self.fuse = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, 1, 1) for _ in range(n - 1))
        for conv in [*self.down, *self.fuse]:
            nn.init.kaiming_uniform_(conv.weight, a=1)
            nn.init.zeros_(conv.bias)
        self.extra = extra_block(extra_blocks, out_channels)
        self.out_channels = out_channels

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        inputs = take_levels(features, self.levels)
        top_down = list(self.fpn(inputs).values())
        outs = [top_down[0]]
        for down, fuse, lateral in zip(self.down, self.fuse, top_down[1:]):
            below = F.relu(down(outs[-1]))
            if below.shape[-2:] != lateral.shape[-2:]:  # odd input sizes round differently
                below = F.interpolate(below, size=lateral.shape[-2:], mode="nearest")
            outs.append(F.relu(fuse(below + lateral)))
        names = list(inputs)
        if self.extra is not None:
            outs, names = self.extra(outs, list(inputs.values()), names)
        return OrderedDict(zip(names, outs))
