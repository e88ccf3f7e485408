"""Hard example reintroduction with a model whose confidence is known."""

import torch
from omegaconf import OmegaConf
from torch import nn

from detimb.config.schema import HardExampleConfig
from detimb.data.coco import CocoDetection
from detimb.data.patch_samplers import ClassBalancedPatches
from detimb.data.segmentation import SegmentationDataset, image_pixel_counts
from detimb.engine.hard_examples import HardExampleMiner


class AlwaysBackground(nn.Module):
    """Probability 1 for background everywhere: background patches are certain, others hopeless."""

    def __init__(self, num_classes):
        super().__init__()
        self.num_classes = num_classes
        self.calls = 0

    def forward(self, images):
        self.calls += 1
        out = []
        for im in images:
            probs = torch.zeros(self.num_classes, *im.shape[-2:])
            probs[0] = 1.0
            out.append({"sem_seg": probs})
        return out


def make(tiny_shapes, **hard):
    source = CocoDetection(tiny_shapes / "annotations/train.json", tiny_shapes / "train")
    sampler = ClassBalancedPatches(image_pixel_counts(source), patch_size=32, patches_per_epoch=20, majority_cap=0.2)
    dataset = SegmentationDataset(source, patch_sampler=sampler, seed=2)
    cfg = OmegaConf.structured(HardExampleConfig(enabled=True, **hard))
    return dataset, HardExampleMiner(cfg, dataset, batch_size=4, rank=0, world=1, seed=2)


def test_foreground_patches_the_model_misses_open_the_next_epoch(tiny_shapes):
    dataset, miner = make(tiny_shapes, confidence=0.75, max_fraction=1.0)
    model = AlwaysBackground(dataset.label_map.num_classes).train()
    miner.before_epoch(model, 0, torch.device("cpu"))
    assert model.calls == 0 and 0 not in dataset.hard  # nothing before the first epoch
    previous = [dataset.spec(0, i) for i in range(20)]
    miner.before_epoch(model, 1, torch.device("cpu"))
    assert model.training  # handed back in the mode it came in
    want = sorted(s for s in previous if s[3] > 0)  # every foreground-centred patch, confidence 0
    assert dataset.hard[1] == want and miner.stats["hard/reintroduced"] == len(want)
    dataset.set_epoch(1)
    assert [tuple(dataset[i][1]["patch"].tolist()) for i in range(len(want))] == want
    calls = model.calls
    miner.before_epoch(model, 1, torch.device("cpu"))  # already known (e.g. restored): not re-scored
    assert model.calls == calls


def test_max_fraction_and_every_epochs(tiny_shapes):
    dataset, miner = make(tiny_shapes, confidence=0.75, max_fraction=0.25, every_epochs=2)
    model = AlwaysBackground(dataset.label_map.num_classes)
    miner.before_epoch(model, 1, torch.device("cpu"))
    assert 1 not in dataset.hard
    miner.before_epoch(model, 2, torch.device("cpu"))
    assert len(dataset.hard[2]) == min(5, int(miner.stats["hard/below_confidence"]))
