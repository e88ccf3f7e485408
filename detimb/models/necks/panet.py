"""PANet's neck: FPN's top-down path followed by a bottom-up path augmentation."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from detimb.models.necks.base import NECKS, take_levels
from detimb.models.necks.fpn import FPN


@NECKS.register("panet")
class PANet(FPN):
    """Path Aggregation Network neck (Liu et al., CVPR 2018).

    After torchvision's FPN (P2..P5), a bottom-up path: ``N2 = P2``,
    ``N(i+1) = ReLU(conv3x3(ReLU(conv3x3_stride2(N_i)) + P(i+1)))``, so low-level detail
    reaches the top levels through a short path. Output names and strides equal FPN's,
    including the extra level (``extra_blocks`` 'maxpool' pools N5; 'p6p7' builds on N5).
    The FPN's keys are torchvision's; the bottom-up path adds ``down`` and ``fuse``.
    Defaults: out_channels=256, extra_blocks='maxpool', levels=None. Adaptive feature
    pooling, PANet's other half, is an option of the RoI head
    (``model.roi_head.adaptive_pooling``).
    """

    def __init__(self, in_channels_list: list[int], out_channels: int = 256,
                 extra_blocks: str | None = "maxpool", levels: list[int] | None = None,
                 norm: str | None = None) -> None:
        super().__init__(in_channels_list, out_channels, extra_blocks, levels, norm)
        n = len(self.levels)
        self.down = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, 2, 1) for _ in range(n - 1))
        self.fuse = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, 1, 1) for _ in range(n - 1))
        for conv in [*self.down, *self.fuse]:
            nn.init.kaiming_uniform_(conv.weight, a=1)
            nn.init.zeros_(conv.bias)

    def pyramid(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        inputs = take_levels(features, self.levels)
        top_down = self.top_down(inputs)
        outs = [top_down[0]]
        for down, fuse, lateral in zip(self.down, self.fuse, top_down[1:]):
            below = F.relu(down(outs[-1]))
            if below.shape[-2:] != lateral.shape[-2:]:  # odd input sizes round differently
                below = F.interpolate(below, size=lateral.shape[-2:], mode="nearest")
            outs.append(F.relu(fuse(below + lateral)))
        return self.with_extra_levels(inputs, outs)
