import pytest
import torch
from torchvision import models

from detimb.models.backbones import BACKBONES
from detimb.models.necks import FPN
from detimb.models.transform import DetectionTransform

# Channels of the returned levels, from the architectures' papers (He et al. 2016 table 1;
# Howard et al. 2019 table 1: last block at strides 8, 16 and 32).
EXPECTED = {
    "resnet18": ([64, 128, 256, 512], [4, 8, 16, 32]),
    "resnet34": ([64, 128, 256, 512], [4, 8, 16, 32]),
    "resnet50": ([256, 512, 1024, 2048], [4, 8, 16, 32]),
    "mobilenet_v3_large": ([40, 112, 960], [8, 16, 32]),
    # torchvision's _mobilenet_extractor: the last stride-2 block (160) and the last block (960), both stride 32
    "mobilenet_v3_large_fpn": ([160, 960], [32, 32]),
    "small_cnn": ([32, 64, 128, 256], [4, 8, 16, 32]),
}


@pytest.mark.parametrize("name", BACKBONES.names())
def test_backbone_channels_and_strides(name):
    backbone = BACKBONES.build({"type": name}, "test").eval()
    channels, strides = EXPECTED[name]
    assert backbone.out_channels_list == channels
    with torch.no_grad():
        out = backbone(torch.zeros(1, 3, 128, 128))
    assert [128 // v.shape[-1] for v in out.values()] == strides
    assert [v.shape[1] for v in out.values()] == channels


def test_local_weights_are_loaded_and_layers_frozen(tmp_path):
    reference = models.resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save(reference.state_dict(), path)
    backbone = BACKBONES.build({"type": "resnet18", "weights": str(path), "trainable_layers": 2}, "test")
    assert torch.equal(backbone.body.conv1.weight, reference.conv1.weight)
    assert not backbone.body.get_submodule("layer2.0.conv1").weight.requires_grad
    assert backbone.body.get_submodule("layer3.0.conv1").weight.requires_grad


def test_fpn_names_levels_and_extra_blocks():
    feats = {str(i): torch.zeros(1, c, 64 // 2**i, 64 // 2**i) for i, c in enumerate([8, 16, 32])}
    out = FPN([8, 16, 32], 12, "maxpool")(feats)
    assert list(out) == ["0", "1", "2", "pool"] and all(v.shape[1] == 12 for v in out.values())
    out = FPN([8, 16, 32], 12, "p6p7", levels=[1, 2])(feats)
    assert list(out) == ["1", "2", "p6", "p7"]
    assert [v.shape[-1] for v in out.values()] == [32, 16, 8, 4]
    with pytest.raises(ValueError):
        FPN([8, 16], 12, "p5")


def test_transform_resize_is_explicit():
    image = torch.rand(3, 48, 64)
    keep = DetectionTransform(False, 32, 1000, [0.0] * 3, [1.0] * 3, 32).eval()
    batch, _ = keep([image])
    assert batch.image_sizes == [(48, 64)] and batch.tensors.shape[-2:] == (64, 64)
    assert torch.allclose(batch.tensors[0, :, :48, :64], image)
    resize = DetectionTransform(True, 32, 1000, [0.0] * 3, [1.0] * 3, 32).eval()
    batch, _ = resize([image])
    assert batch.image_sizes == [(32, 42)]  # short side 48 -> 32, long side 64 * 2/3
