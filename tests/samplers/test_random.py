import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from detimb.samplers import SAMPLERS, RandomSampler


def labels_of(pos: int, neg: int, ignored: int) -> torch.Tensor:
    t = torch.cat([torch.ones(pos, dtype=torch.int64) * 2, torch.zeros(neg, dtype=torch.int64),
                   -torch.ones(ignored, dtype=torch.int64)])
    return t[torch.randperm(len(t))]


@pytest.mark.parametrize("pos,neg,num,fraction,want_pos,want_neg", [
    (10, 100, 16, 0.25, 4, 12),   # int(16 * 0.25) = 4 positives, the rest negatives
    (2, 100, 16, 0.25, 2, 14),    # few positives: negatives fill up to num
    (10, 3, 16, 0.5, 8, 3),       # few negatives: all of them
    (0, 50, 8, 0.5, 0, 8),
])
def test_quota_by_hand(pos, neg, num, fraction, want_pos, want_neg):
    labels = labels_of(pos, neg, 5)
    (w,) = RandomSampler(num, fraction)([labels])
    assert w.dtype == torch.float32 and set(w.unique().tolist()) <= {0.0, 1.0}
    assert int(w[labels > 0].sum()) == want_pos
    assert int(w[labels == 0].sum()) == want_neg
    assert int(w[labels < 0].sum()) == 0


@settings(max_examples=60, deadline=None)
@given(pos=st.integers(0, 40), neg=st.integers(0, 200), ignored=st.integers(0, 20),
       num=st.integers(1, 128), fraction=st.floats(0.05, 1.0))
def test_quota_properties(pos, neg, ignored, num, fraction):
    labels = labels_of(pos, neg, ignored)
    (w,) = RandomSampler(num, fraction)([labels])
    assert w.sum() <= num
    assert w[labels < 0].sum() == 0
    assert w[labels > 0].sum() <= int(num * fraction)
    assert w[labels > 0].sum() == min(pos, int(num * fraction))


def test_same_seed_same_draw():
    labels = labels_of(30, 300, 10)
    draws = []
    for _ in range(2):
        torch.manual_seed(0)
        draws.append(RandomSampler(64, 0.25)([labels, labels]))
    assert all(torch.equal(a, b) for a, b in zip(*draws))


def test_registered_and_arguments_checked():
    assert "random" in SAMPLERS.names()
    with pytest.raises(ValueError):
        RandomSampler(0, 0.5)
    with pytest.raises(ValueError):
        RandomSampler(16, 0.0)
