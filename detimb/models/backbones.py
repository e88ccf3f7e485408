"""Backbones: ``forward(images (B, 3, H, W)) -> OrderedDict[str, Tensor]`` of increasing stride.

Each backbone exposes ``out_channels_list`` (one entry per returned level), measured by a
forward pass at construction rather than written as constants, so any neck fits any
backbone. No weights are downloaded: ``weights`` is a local file or None.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial
from typing import Callable

import torch
from torch import Tensor, nn
from torchvision import models
from torchvision.models.feature_extraction import create_feature_extractor
from torchvision.ops import FrozenBatchNorm2d

from detimb.utils import read_torch_file
from detimb.registry import Registry

BACKBONES = Registry("backbone")

NORMS: dict[str, Callable[[int], nn.Module]] = {
    "bn": nn.BatchNorm2d,
    "frozen_bn": FrozenBatchNorm2d,
    "gn": partial(nn.GroupNorm, 16),
    "none": lambda channels: nn.Identity(),
}


def _norm(name: str) -> Callable[[int], nn.Module]:
    if name not in NORMS:
        raise ValueError(f"norm must be one of {sorted(NORMS)}, got {name!r}")
    return NORMS[name]


def _load_local_weights(module: nn.Module, path: str | None) -> None:
    """Load a local ImageNet classification state dict (torchvision's ``resnet50-*.pth``, or
    a detimb checkpoint's ``model``), ignoring the classifier head; failures are named."""
    if path is None:
        return
    state = read_torch_file(path)
    state = state.get("model", state) if isinstance(state, dict) else state
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: not a state dict of tensors; give torch.save(net.state_dict()) of the classifier")
    missing, unexpected = module.load_state_dict(state, strict=False)
    unexpected = [k for k in unexpected if not k.startswith(("fc.", "classifier."))]
    if missing or unexpected:
        raise ValueError(f"{path}: weights do not fit the backbone"
                         f" (missing {missing[:5]}, unexpected {unexpected[:5]}); a detector checkpoint goes in"
                         " model.weights, a classifier's state dict here")


def pretrained_defaults(pretrained: bool, norm: str | None, trainable_layers: int | None,
                        all_layers: int = 5) -> tuple[str, int]:
    """torchvision's detection defaults: with weights (the backbone's or the detector's)
    FrozenBatchNorm2d and 3 trainable stages, without them BatchNorm2d and every stage."""
    return (norm if norm is not None else ("frozen_bn" if pretrained else "bn"),
            trainable_layers if trainable_layers is not None else (3 if pretrained else all_layers))


def input_channels(module: nn.Module) -> int:
    """The input channels of a network: those of its first convolution."""
    first = next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)
    return 3 if first is None else first.in_channels


@torch.no_grad()
def probe_outputs(module: nn.Module, size: int = 64) -> dict[str, Tensor]:
    """``module``'s output for one blank image, run in eval mode (BatchNorm statistics untouched)."""
    was_training = module.training
    module.eval()
    out = module(torch.zeros(1, input_channels(module), size, size))
    module.train(was_training)
    return out


def probe_channels(body: nn.Module) -> list[int]:
    """Channels of each level ``body`` returns."""
    return [v.shape[1] for v in probe_outputs(body).values()]


def adapt_input_weight(weight: Tensor, channels: int) -> Tensor:
    """A first convolution's (O, 3, k, k) RGB weight for ``channels`` inputs, as torchvision
    users adapt pretrained weights: the RGB weights kept, each extra band initialised with
    their mean; fewer than 3 inputs take the mean, scaled by 3 / channels (the response to a
    grey image is kept)."""
    mean = weight.mean(dim=1, keepdim=True)
    if channels >= weight.shape[1]:
        return torch.cat([weight, mean.expand(-1, channels - weight.shape[1], -1, -1)], dim=1)
    return (mean * weight.shape[1] / channels).expand(-1, channels, -1, -1).clone()


def with_input_channels(conv: nn.Conv2d, channels: int) -> nn.Conv2d:
    """``conv`` taking ``channels`` inputs, its weights adapted by ``adapt_input_weight``."""
    if conv.in_channels == channels:
        return conv
    new = nn.Conv2d(channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    conv.groups, conv.bias is not None, conv.padding_mode)
    with torch.no_grad():
        new.weight.copy_(adapt_input_weight(conv.weight, channels))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


class FeatureBackbone(nn.Module):
    """Wraps a feature extractor; records each level's channels."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.out_channels_list = probe_channels(body)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return OrderedDict(self.body(x))


class SmallCNN(nn.Module):
    """A from-scratch CNN that trains usefully on a CPU: a stride-2 stem, then one block per
    level (stride 4, 8, 16, 32), each a stride-2 conv and a conv (norm + ReLU)."""

    def __init__(self, channels: tuple[int, ...] = (32, 64, 128, 256), stem_channels: int = 32,
                 norm: str = "bn", in_channels: int = 3) -> None:
        super().__init__()
        norm_layer = _norm(norm)

        def conv(cin: int, cout: int, stride: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), norm_layer(cout), nn.ReLU(inplace=True)]

        self.stem = nn.Sequential(*conv(in_channels, stem_channels, 2))
        self.stages = nn.ModuleList()
        cin = stem_channels
        for cout in channels:
            self.stages.append(nn.Sequential(*conv(cin, cout, 2), *conv(cout, cout, 1)))
            cin = cout
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        x = self.stem(x)
        out = OrderedDict()
        for i, stage in enumerate(self.stages):
            x = stage(x)
            out[str(i)] = x
        return out


@BACKBONES.register("small_cnn")
def small_cnn(channels: tuple[int, ...] = (32, 64, 128, 256), stem_channels: int = 32, norm: str = "bn",
              weights: str | None = None, pretrained: bool = False, in_channels: int = 3) -> FeatureBackbone:
    """detimb's CPU backbone: 9 convs, levels at strides 4/8/16/32 with ``channels``
    (default 32/64/128/256, about 1.2M parameters), BatchNorm by default (``pretrained``,
    set when the detector's weights are loaded, changes nothing here)."""
    body = SmallCNN(tuple(channels), stem_channels, norm)
    _load_local_weights(body, weights)
    body.stem[0] = with_input_channels(body.stem[0], in_channels)
    return FeatureBackbone(body)


def _freeze_resnet(net: nn.Module, trainable_layers: int) -> None:
    if not 0 <= trainable_layers <= 5:
        raise ValueError(f"trainable_layers must be in [0, 5], got {trainable_layers}")
    trainable = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
    if trainable_layers == 5:
        trainable.append("bn1")
    for name, param in net.named_parameters():
        if all(not name.startswith(layer) for layer in trainable):
            param.requires_grad_(False)


def _resnet(arch: str, weights: str | None, norm: str | None, trainable_layers: int | None,
            pretrained: bool, in_channels: int) -> FeatureBackbone:
    norm, trainable_layers = pretrained_defaults(pretrained or weights is not None, norm, trainable_layers)
    net = getattr(models, arch)(weights=None, norm_layer=_norm(norm))
    _load_local_weights(net, weights)
    net.conv1 = with_input_channels(net.conv1, in_channels)
    _freeze_resnet(net, trainable_layers)
    nodes = {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"}
    return FeatureBackbone(create_feature_extractor(net, return_nodes=nodes))


@BACKBONES.register("resnet18")
def resnet18(weights: str | None = None, norm: str | None = None, trainable_layers: int | None = None,
           pretrained: bool = False, in_channels: int = 3) -> FeatureBackbone:
    """ResNet-18 (He et al., CVPR 2016), levels C2-C5. Defaults as torchvision's detection
    builders: with weights (``weights``, or the detector's: ``pretrained``) FrozenBatchNorm2d
    and trainable_layers=3, without them BatchNorm2d and all 5 stages trained."""
    return _resnet("resnet18", weights, norm, trainable_layers, pretrained, in_channels)


@BACKBONES.register("resnet34")
def resnet34(weights: str | None = None, norm: str | None = None, trainable_layers: int | None = None,
           pretrained: bool = False, in_channels: int = 3) -> FeatureBackbone:
    """ResNet-34 (He et al., CVPR 2016), levels C2-C5; defaults as resnet18."""
    return _resnet("resnet34", weights, norm, trainable_layers, pretrained, in_channels)


@BACKBONES.register("resnet50")
def resnet50(weights: str | None = None, norm: str | None = None, trainable_layers: int | None = None,
           pretrained: bool = False, in_channels: int = 3) -> FeatureBackbone:
    """ResNet-50 (He et al., CVPR 2016), levels C2-C5; defaults as resnet18."""
    return _resnet("resnet50", weights, norm, trainable_layers, pretrained, in_channels)


@BACKBONES.register("mobilenet_v3_large")
def mobilenet_v3_large(weights: str | None = None, norm: str | None = None, pretrained: bool = False,
                       in_channels: int = 3) -> FeatureBackbone:
    """MobileNetV3-Large (Howard et al., ICCV 2019): the last block at strides 8, 16 and 32.
    BatchNorm2d, or FrozenBatchNorm2d with weights (torchvision's detection default)."""
    norm, _ = pretrained_defaults(pretrained or weights is not None, norm, None)
    net = models.mobilenet_v3_large(weights=None, norm_layer=_norm(norm))
    _load_local_weights(net, weights)
    net.features[0][0] = with_input_channels(net.features[0][0], in_channels)
    features = net.features
    last_at_stride: dict[int, int] = {}
    with torch.no_grad():
        features.eval()
        x, size = torch.zeros(1, 3, 64, 64), 64
        for i, block in enumerate(features):
            x = block(x)
            last_at_stride[size // x.shape[-1]] = i
        features.train()
    nodes = {f"features.{last_at_stride[s]}": str(k) for k, s in enumerate((8, 16, 32))}
    return FeatureBackbone(create_feature_extractor(net, return_nodes=nodes))


@BACKBONES.register("mobilenet_v3_large_fpn")
def mobilenet_v3_large_fpn(weights: str | None = None, norm: str | None = None, trainable_layers: int | None = None,
                           pretrained: bool = False, in_channels: int = 3) -> FeatureBackbone:
    """MobileNetV3-Large as torchvision's ``fasterrcnn_mobilenet_v3_large_fpn`` takes it
    (``_mobilenet_extractor``): the features' last two stages (strides 16 and 32) under
    torchvision's key names; with weights FrozenBatchNorm2d and 3 of 6 stages trained,
    without them BatchNorm2d and all 6."""
    pretrained = pretrained or weights is not None
    norm, trainable_layers = pretrained_defaults(pretrained, norm, trainable_layers, all_layers=6)
    net = models.mobilenet_v3_large(weights=None, norm_layer=_norm(norm))
    _load_local_weights(net, weights)
    net.features[0][0] = with_input_channels(net.features[0][0], in_channels)
    features = net.features
    stages = [0] + [i for i, block in enumerate(features) if getattr(block, "_is_cn", False)] + [len(features) - 1]
    if not 0 <= trainable_layers <= len(stages):
        raise ValueError(f"trainable_layers must be in [0, {len(stages)}], got {trainable_layers}")
    freeze_before = len(features) if trainable_layers == 0 else stages[len(stages) - trainable_layers]
    for block in list(features)[:freeze_before]:
        for param in block.parameters():
            param.requires_grad_(False)
    nodes = {str(stages[-2]): "0", str(stages[-1]): "1"}
    return FeatureBackbone(create_feature_extractor(features, return_nodes=nodes))
