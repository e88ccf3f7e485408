"""Necks checked against hand-computable cases and against FPN's geometry."""

from collections import OrderedDict

import pytest
import torch
from torch import nn
from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign

from detimb.models.backbones import BACKBONES
from detimb.models.heads.adaptive_pooling import AdaptivePoolingBoxHead, AllLevelsRoIAlign
from detimb.models.necks import NECKS, PANet, balanced_feature_pyramid
from detimb.models.necks.bfp import NonLocal2d

NECK_SPECS = {
    "fpn": {"type": "fpn"},
    "panet": {"type": "panet"},
    "bfp": {"type": "bfp"},
    "bfp_on_panet": {"type": "bfp", "base": "panet", "refine": "conv"},
}
assert {s["type"] for s in NECK_SPECS.values()} == set(NECKS.names()), "add new necks to NECK_SPECS"


def levels(channels, size=64):
    return OrderedDict((str(i), torch.rand(2, c, size // 2**i, size // 2**i)) for i, c in enumerate(channels))


@pytest.mark.parametrize("backbone", ["small_cnn", "resnet18", "mobilenet_v3_large"])
@pytest.mark.parametrize("neck", sorted(NECK_SPECS))
@pytest.mark.parametrize("extra", ["maxpool", "p6p7"])
def test_names_shapes_and_strides_equal_fpn(backbone, neck, extra):
    body = BACKBONES.build({"type": backbone}, "test").eval()
    feats = body(torch.rand(1, 3, 128, 128))
    reference = NECKS.build({"type": "fpn", "out_channels": 16, "extra_blocks": extra}, "t",
                            in_channels_list=body.out_channels_list)(feats)
    out = NECKS.build({**NECK_SPECS[neck], "out_channels": 16, "extra_blocks": extra}, "t",
                      in_channels_list=body.out_channels_list)(feats)
    assert list(out) == list(reference)
    assert [v.shape for v in out.values()] == [v.shape for v in reference.values()]


def identity_conv_(conv: nn.Conv2d) -> None:
    """Centre tap 1 on the diagonal: a 3x3 conv that copies (stride 2: copies every other pixel)."""
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        for c in range(conv.out_channels):
            conv.weight[c, c, 1, 1] = 1.0


def test_panet_bottom_up_path_by_hand():
    neck = PANet([4, 4, 4], out_channels=4, extra_blocks=None)
    for conv in [*neck.down, *neck.fuse]:
        identity_conv_(conv)
    feats = levels([4, 4, 4], 16)
    p = [x.clamp(min=0) for x in neck.top_down(feats)]  # non-negative P so the ReLUs pass it through
    neck.top_down = lambda _: p  # hand the bottom-up path known P levels
    n2, n3, n4 = neck(feats).values()
    # N2 = P2; N3 = P3 + P2[::2, ::2]; N4 = P4 + N3[::2, ::2] = P4 + P3[::2, ::2] + P2[::4, ::4]
    assert torch.equal(n2, p[0])
    assert torch.allclose(n3, p[1] + p[0][..., ::2, ::2])
    assert torch.allclose(n4, p[2] + p[1][..., ::2, ::2] + p[0][..., ::4, ::4])


def test_bfp_with_zero_refine_returns_its_input():
    bfp = balanced_feature_pyramid([8, 16, 32], base="fpn", refine="conv", refine_level=1, out_channels=8)
    nn.init.zeros_(bfp.refine[0].weight)
    nn.init.zeros_(bfp.refine[0].bias)
    feats = levels([8, 16, 32])
    base = bfp.pyramid(feats)  # the FPN alone
    out = bfp(feats)
    assert all(torch.equal(out[k], base[k]) for k in base)


def test_bfp_gathers_averages_and_scatters_by_hand():
    # constant levels c_i: every level gathers to c_i, the balanced map is mean(c), each
    # level gets it back as a residual: out_i = c_i + mean(c)
    consts = [1.0, 2.0, 6.0, 3.0]
    pyramid = OrderedDict((str(i), torch.full((1, 1, 16 // 2**i, 16 // 2**i), c)) for i, c in enumerate(consts))
    bfp = balanced_feature_pyramid([1], base="fpn", refine="none", refine_level=2, out_channels=1)
    out = bfp.balance(pyramid)
    for (name, x), c in zip(out.items(), consts):
        assert x.shape == pyramid[name].shape
        assert torch.allclose(x, torch.full_like(x, c + sum(consts) / 4))


def test_non_local_starts_as_identity_and_attends_by_hand():
    x = torch.rand(2, 3, 4, 5)
    block = NonLocal2d(3)
    assert torch.equal(block(x), x)
    # theta = phi = 0 -> uniform attention; g and W_z identity -> x + spatial mean of x
    with torch.no_grad():
        for conv in (block.theta, block.phi):
            conv.weight.zero_()
            conv.bias.zero_()
        for conv in (block.g, block.out):
            conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            conv.bias.zero_()
    assert torch.allclose(block(x), x + x.mean(dim=(2, 3), keepdim=True), atol=1e-6)


def test_bfp_refuses_itself_as_base_and_bad_refine():
    with pytest.raises(ValueError, match="bfp stacks on fpn or panet"):
        balanced_feature_pyramid([8], base="bfp")
    with pytest.raises(ValueError, match="refine must be"):
        balanced_feature_pyramid([8], refine="attention")


def test_adaptive_pooling_with_one_level_is_ordinary_pooling():
    feats = {"0": torch.rand(2, 4, 32, 32), "1": torch.rand(2, 4, 16, 16)}
    boxes = [torch.tensor([[2.0, 3.0, 20.0, 25.0], [10.0, 0.0, 60.0, 40.0]]), torch.tensor([[0.0, 0.0, 64.0, 64.0]])]
    shapes = [(64, 64), (64, 64)]
    ordinary = MultiScaleRoIAlign(["1"], 7, 2)(feats, boxes, shapes)
    pooled = AllLevelsRoIAlign(["1"], 7, 2)(feats, boxes, shapes)
    assert pooled.shape == (3, 1, 4, 7, 7)
    assert torch.allclose(pooled[:, 0], ordinary)
    two_mlp = TwoMLPHead(4 * 49, 16)
    head = AdaptivePoolingBoxHead(1, 4 * 49, 16)
    head.fc6[0].load_state_dict(two_mlp.fc6.state_dict())
    head.fc7.load_state_dict(two_mlp.fc7.state_dict())
    assert torch.allclose(head(pooled), two_mlp(ordinary))


def test_adaptive_pooling_fuses_levels_by_max_or_sum():
    x = torch.rand(5, 2, 3, 2, 2)
    head = AdaptivePoolingBoxHead(2, 12, 6, fuse="max")
    nn.init.eye_(head.fc7.weight)
    nn.init.zeros_(head.fc7.bias)
    per_level = [torch.relu(fc(x[:, i].flatten(1))) for i, fc in enumerate(head.fc6)]
    assert torch.allclose(head(x), torch.maximum(*per_level))
    head.fuse = "sum"
    assert torch.allclose(head(x), per_level[0] + per_level[1])
    with pytest.raises(ValueError):
        AdaptivePoolingBoxHead(2, 12, 6, fuse="mean")
