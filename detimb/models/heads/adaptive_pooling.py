"""PANet's adaptive feature pooling: every RoI pooled from every level, fused after one
layer per level (Liu et al., CVPR 2018, section 3.2)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torchvision.ops import roi_align


class AllLevelsRoIAlign(nn.Module):
    """RoIAlign of each box on every level in ``featmap_names``.

    Returns (K, L, C, S, S) for the K boxes of all images. Each level's scale is inferred
    as torchvision's MultiScaleRoIAlign does (the power of two closest to feature size /
    image size), with the same ``sampling_ratio`` and ``aligned=False``.
    """

    def __init__(self, featmap_names: list[str], output_size: int, sampling_ratio: int) -> None:
        super().__init__()
        self.featmap_names = list(featmap_names)
        self.output_size = (output_size, output_size)
        self.sampling_ratio = sampling_ratio

    def forward(self, features: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        levels = [features[name] for name in self.featmap_names]
        max_h = max(s[0] for s in image_shapes)
        max_w = max(s[1] for s in image_shapes)
        rois = torch.cat([torch.cat([torch.full_like(b[:, :1], i), b], dim=1) for i, b in enumerate(boxes)])
        pooled = []
        for feature in levels:
            scale_h = 2.0 ** round(math.log2(feature.shape[-2] / max_h))
            scale_w = 2.0 ** round(math.log2(feature.shape[-1] / max_w))
            if scale_h != scale_w:
                raise ValueError(f"feature level of shape {tuple(feature.shape)} has unequal strides")
            pooled.append(roi_align(feature, rois, self.output_size, scale_h, self.sampling_ratio, aligned=False))
        return torch.stack(pooled, dim=1)


class AdaptivePoolingBoxHead(nn.Module):
    """Box head over all-level RoI features: ``ReLU(fc6_l(x_l))`` for each level ``l``, fused by
    element-wise ``max`` (PANet's choice) or ``sum``, then ``ReLU(fc7)``. With one level it is
    torchvision's TwoMLPHead. Input (K, L, C, S, S); output (K, representation_size)."""

    def __init__(self, num_levels: int, in_channels: int, representation_size: int, fuse: str = "max") -> None:
        super().__init__()
        if fuse not in ("max", "sum"):
            raise ValueError(f"adaptive pooling fuse must be 'max' or 'sum', got {fuse!r}")
        self.fuse = fuse
        self.fc6 = nn.ModuleList(nn.Linear(in_channels, representation_size) for _ in range(num_levels))
        self.fc7 = nn.Linear(representation_size, representation_size)

    def forward(self, x: Tensor) -> Tensor:
        per_level = torch.stack([torch.relu(fc(x[:, i].flatten(1))) for i, fc in enumerate(self.fc6)])
        fused = per_level.amax(0) if self.fuse == "max" else per_level.sum(0)
        return torch.relu(self.fc7(fused))
