"""Image samplers against LVIS's formula by hand, frequencies over many draws, and shares."""

import math
from collections import Counter

import pytest

from detimb.data.image_samplers import (
    IMAGE_SAMPLERS, ClassAwareImages, EpochSampler, RepeatFactorImages, UniformImages, repeat_factors,
)


def test_repeat_factors_by_hand():
    # images {0, 1}, {0}, {}: f_0 = 2/3, f_1 = 1/3; t = 0.5 -> r_0 = max(1, sqrt(0.75)) = 1, r_1 = sqrt(1.5)
    assert repeat_factors([{0, 1}, {0}, set()], 0.5) == pytest.approx([math.sqrt(1.5), 1.0, 1.0])
    assert repeat_factors([{0, 1}, {0}, set()], 0.5, sqrt=False) == pytest.approx([1.5, 1.0, 1.0])


def test_repeat_factor_epochs_round_stochastically():
    classes = [{0, 1}, {0}, set()]
    sampler = RepeatFactorImages(classes, threshold=0.5)
    lengths, counts = [], Counter()
    for epoch in range(2000):
        idx = sampler.epoch_indices(epoch, seed=0)
        lengths.append(len(idx))
        counts.update(idx)
        assert set(Counter(idx).values()) <= {1, 2} and idx.count(1) == 1 and idx.count(2) == 1
    # image 0 appears floor(1.2247) = 1 time plus once more with probability 0.2247
    assert sum(lengths) / len(lengths) == pytest.approx(2 + math.sqrt(1.5), abs=0.03)
    assert counts[0] / 2000 == pytest.approx(math.sqrt(1.5), abs=0.03)


def test_class_aware_draws_classes_uniformly():
    # class 1 is in one image of 100, class 2 in 99: class-aware draws each class half the time
    classes = [{1}] + [{2}] * 99
    sampler = ClassAwareImages(classes)
    drawn = Counter()
    for epoch in range(40):
        drawn.update(sampler.epoch_indices(epoch, seed=1))
    total = sum(drawn.values())
    assert total == 40 * 100
    assert drawn[0] / total == pytest.approx(0.5, abs=0.03)


def test_class_aware_never_draws_empty_images_and_needs_annotations():
    sampler = ClassAwareImages([{1}, set(), {2}])
    assert 1 not in sampler.epoch_indices(0, 0)
    with pytest.raises(ValueError):
        ClassAwareImages([set(), set()])


def test_epochs_depend_only_on_seed_and_epoch():
    classes = [{i % 3} for i in range(30)]
    for name in IMAGE_SAMPLERS.names():
        a = IMAGE_SAMPLERS.build({"type": name}, "t", classes=classes)
        b = IMAGE_SAMPLERS.build({"type": name}, "t", classes=classes)
        assert a.epoch_indices(3, 7) == b.epoch_indices(3, 7)
        assert a.epoch_indices(3, 7) != a.epoch_indices(4, 7)


@pytest.mark.parametrize("name", ["uniform", "repeat_factor", "class_aware"])
@pytest.mark.parametrize("world", [1, 2, 3])
def test_rank_shares_are_disjoint_equal_and_cover_the_epoch(name, world):
    classes = [{i % 4} if i % 5 else set() for i in range(23)]
    spec = {"type": name, **({"threshold": 0.3} if name == "repeat_factor" else {})}
    policy = IMAGE_SAMPLERS.build(spec, "t", classes=classes)
    epoch_list = policy.epoch_indices(2, 5)
    shares = [EpochSampler(policy, r, world, 5) for r in range(world)]
    for s in shares:
        s.set_epoch(2)
    lists = [[item.index for item in s] for s in shares]
    assert all(item.epoch == 2 for s in shares for item in s)
    assert len({len(x) for x in lists}) == 1  # same length on every rank
    padded = math.ceil(len(epoch_list) / world) * world
    assert sorted(i for x in lists for i in x) == sorted((epoch_list * 2)[:padded])  # cover, padding repeats
    positions = [list(range(r, padded, world)) for r in range(world)]
    assert all(not set(p) & set(q) for i, p in enumerate(positions) for q in positions[i + 1:])  # disjoint slots


def test_uniform_matches_torch_distributed_sampler_order():
    from torch.utils.data import DistributedSampler

    ds = list(range(17))
    for rank in range(2):
        ours = EpochSampler(UniformImages([set()] * 17), rank, 2, seed=4)
        theirs = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=4)
        ours.set_epoch(3)
        theirs.set_epoch(3)
        assert [item.index for item in ours] == list(theirs)
