"""The training loader: how many workers ``auto`` means, and that workers which persist
across epochs give exactly the batches the training process would read itself."""

import pytest
import torch
from omegaconf import OmegaConf

from detimb.data import loader as loader_module
from detimb.data.coco import CocoDetection
from detimb.data.loader import LoaderSettings, build_loader, resolve_num_workers


@pytest.mark.parametrize(("cores", "local_world", "expected"), [(32, 1, 8), (6, 1, 6), (8, 2, 4), (3, 4, 1)])
def test_auto_workers_are_the_ranks_share_of_the_cores_capped_at_8(monkeypatch, cores, local_world, expected):
    monkeypatch.setattr(loader_module.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert resolve_num_workers("auto", torch.device("cuda", 0), local_world) == expected


def test_auto_workers_take_the_processs_share_when_one_is_set(monkeypatch):
    """A sweep of 4 runs at once on 16 cores gives each run 4 (each took 8 of 16 before)."""
    monkeypatch.setattr(loader_module.os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.setenv("DETIMB_CPUS", "4")
    assert resolve_num_workers("auto", torch.device("cuda", 0)) == 4
    monkeypatch.setenv("DETIMB_CPUS", "not a number")
    assert resolve_num_workers("auto", torch.device("cuda", 0)) == 8


def test_auto_reads_in_the_training_process_on_the_cpu_and_integers_are_kept():
    assert resolve_num_workers("auto", torch.device("cpu")) == 0
    assert resolve_num_workers(3, torch.device("cpu")) == 3
    assert resolve_num_workers(0, torch.device("cuda", 0)) == 0


def test_settings_pin_memory_on_cuda_only(monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    data = OmegaConf.create({"num_workers": 2, "prefetch_factor": 5})
    assert LoaderSettings.from_config(data, torch.device("cuda", 0)) == LoaderSettings(2, 5, True)
    assert LoaderSettings.from_config(data, torch.device("cpu")) == LoaderSettings(2, 5, False)


def _epochs(loader, epochs: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    seen = []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        for images, targets in loader:
            seen += [(image, target["boxes"]) for image, target in zip(images, targets)]
    return seen


def test_persistent_workers_augment_each_epoch_as_the_training_process_does(tiny_shapes):
    """Workers never see a ``set_epoch`` made after they start: the sampler's (epoch,
    index) pairs carry the epoch, so each epoch's flips are those of indexing the dataset
    at that epoch, with 0 workers and with 2 that persist."""
    def dataset():
        return CocoDetection(tiny_shapes / "annotations/train.json", tiny_shapes / "train",
                             transforms=[{"type": "HorizontalFlip", "p": 0.5}], seed=3)

    direct = dataset()
    expected = []
    for epoch in range(3):
        direct.set_epoch(epoch)
        expected += [(direct[i][0], direct[i][1]["boxes"]) for i in range(len(direct))]
    inline = build_loader(dataset(), batch_size=4, seed=3)
    workers = build_loader(dataset(), batch_size=4, seed=3, settings=LoaderSettings(num_workers=2))
    assert workers.persistent_workers and workers.prefetch_factor == 2
    for got in (_epochs(inline, 3), _epochs(workers, 3)):
        assert len(got) == len(expected) == 3 * len(direct)
        for (image_a, boxes_a), (image_b, boxes_b) in zip(expected, got):
            assert torch.equal(image_a, image_b) and torch.equal(boxes_a, boxes_b)
    n = len(direct)
    assert any(not torch.equal(expected[i][1], expected[n + i][1]) for i in range(n))  # epochs draw anew


def test_a_dataset_changed_between_epochs_gets_fresh_workers(tiny_shapes):
    dataset = CocoDetection(tiny_shapes / "annotations/train.json", tiny_shapes / "train")
    loader = build_loader(dataset, batch_size=4, settings=LoaderSettings(num_workers=1), persistent=False)
    assert not loader.persistent_workers
