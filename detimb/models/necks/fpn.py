"""Feature Pyramid Network: torchvision's, with a choice of backbone levels."""

from __future__ import annotations


from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork

from detimb.models.necks.base import NECKS, extra_block, select_levels, take_levels


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
        self.levels = select_levels(in_channels_list, levels)
        self.fpn = FeaturePyramidNetwork([in_channels_list[i] for i in self.levels], out_channels,
                                         extra_blocks=extra_block(extra_blocks, out_channels))
        self.out_channels = out_channels

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        return self.fpn(take_levels(features, self.levels))
