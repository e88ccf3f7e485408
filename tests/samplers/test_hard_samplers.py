"""Hard samplers against quotas and selections worked out by hand from each method's definition
(torchvision's quota, mmdetection's OHEM and Libra R-CNN samplers, as their docstrings cite)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from detimb.samplers import (
    SAMPLERS, AllSampler, InstanceBalancedSampler, IoUBalancedSampler, OHEMSampler, RandomSampler,
)
from tests.samplers.helpers import cands, mixed

QUOTA_SAMPLERS = {
    "random": lambda n, f: RandomSampler(n, f),
    "random_ub": lambda n, f: RandomSampler(n, f, neg_pos_ub=2),
    "instance_balanced": lambda n, f: InstanceBalancedSampler(n, f),
    "iou_balanced": lambda n, f: IoUBalancedSampler(n, f),
    "iou_balanced_floor": lambda n, f: IoUBalancedSampler(n, f, floor_thr=0.1, floor_fraction=0.5),
    "ohem": lambda n, f: OHEMSampler("quota", n, f),
}


@pytest.mark.parametrize("pos,neg,num,fraction,want_pos,want_neg", [
    (10, 100, 16, 0.25, 4, 12),   # int(16 * 0.25) = 4 positives, the rest negatives
    (2, 100, 16, 0.25, 2, 14),    # few positives: negatives fill up to num
    (10, 3, 16, 0.5, 8, 3),       # few negatives: all of them
    (0, 50, 8, 0.5, 0, 8),
])
@pytest.mark.parametrize("name", sorted(QUOTA_SAMPLERS))
def test_quota_by_hand(name, pos, neg, num, fraction, want_pos, want_neg):
    c = mixed(pos, neg, 5)
    (w,) = QUOTA_SAMPLERS[name](num, fraction)([c])
    assert w.dtype == torch.float32 and set(w.unique().tolist()) <= {0.0, 1.0}
    assert int(w[c.labels > 0].sum()) == want_pos
    if name == "random_ub":  # negatives capped at 2 * max(1, num_pos)
        want_neg = min(want_neg, 2 * max(1, want_pos))
    assert int(w[c.labels == 0].sum()) == want_neg
    assert int(w[c.labels < 0].sum()) == 0


@settings(max_examples=40, deadline=None)
@given(pos=st.integers(0, 40), neg=st.integers(0, 200), ignored=st.integers(0, 20), num=st.integers(1, 128),
       fraction=st.floats(0.05, 1.0), name=st.sampled_from(sorted(QUOTA_SAMPLERS)), seed=st.integers(0, 99))
def test_quota_properties(pos, neg, ignored, num, fraction, name, seed):
    c = mixed(pos, neg, ignored, seed)
    sampler = QUOTA_SAMPLERS[name](num, fraction)
    settings_of = lambda s: {k: v for k, v in vars(s).items() if isinstance(v, (int, float, str, bool, type(None)))}  # noqa: E731
    before = settings_of(sampler)
    (w,) = sampler([c])
    assert w.sum() <= num
    assert w[c.labels < 0].sum() == 0
    assert w[c.labels > 0].sum() == min(pos, int(num * fraction))
    assert w[c.labels == 0].sum() <= neg
    assert settings_of(sampler) == before  # no settings change between calls (floor_thr included)


@pytest.mark.parametrize("name", sorted(QUOTA_SAMPLERS))
def test_same_seed_same_draw(name):
    c = mixed(30, 300, 10)
    draws = []
    for _ in range(2):
        torch.manual_seed(0)
        draws.append(QUOTA_SAMPLERS[name](64, 0.25)([c, c]))
    assert all(torch.equal(a, b) for a, b in zip(*draws))


def test_all_sampler_keeps_every_non_ignored():
    (w,) = AllSampler()([cands([1, 0, -1, 2, 0])])
    assert w.tolist() == [1, 1, 0, 1, 1]


def test_ohem_quota_keeps_the_highest_losses():
    labels = [1, 1, 1, 0, 0, 0, 0, 0, 0, -1]
    losses = [0.1, 0.9, 0.5, 0.2, 0.8, 0.05, 0.7, 0.3, 0.6, 5.0]
    # num 4, fraction 0.5: 2 positives (0.9, 0.5) and 2 negatives (0.8, 0.7); the ignored one never
    (w,) = OHEMSampler("quota", 4, 0.5)([cands(labels, losses=losses)])
    assert torch.where(w > 0)[0].tolist() == [1, 2, 4, 6]


def test_ohem_ratio_caps_negatives_at_three_per_positive():
    labels = [1, 0, 0, 0, 0, 0, 1, 0]
    losses = [0.1, 0.3, 0.9, 0.2, 0.8, 0.7, 0.05, 0.4]
    # 2 positives -> up to 6 negatives of 6: all; positives once each
    (w,) = OHEMSampler("ratio")([cands(labels, losses=losses)])
    assert w.tolist() == [1.0] * 8
    labels = [1] + [0] * 6
    losses = [0.1, 0.3, 0.9, 0.2, 0.8, 0.7, 0.4]
    (w,) = OHEMSampler("ratio", neg_pos_ratio=3)([cands(labels, losses=losses)])
    assert torch.where(w > 0)[0].tolist() == [0, 2, 4, 5]  # the positive and the 3 hardest negatives
    (w,) = OHEMSampler("ratio", min_neg=2)([cands([0, 0, 0], losses=[0.2, 0.9, 0.5])])
    assert w.tolist() == [0, 1, 1]  # no positives: min_neg hardest
    (w,) = OHEMSampler("ratio")([cands([0, 0, 0], losses=[0.2, 0.9, 0.5])])
    assert w.tolist() == [0, 0, 0]  # SSD's default: none


def test_ohem_requires_losses():
    with pytest.raises(ValueError, match="needs Candidates.losses"):
        OHEMSampler()([cands([1, 0])])


def iou_case():
    # one positive at IoU 0.9 sets max IoU: bins of width 0.3 over [0, 0.9)
    ious = [0.9] + [0.05] * 50 + [0.2] * 50 + [0.35] * 5 + [0.45] * 2
    labels = [1] + [0] * 107
    return cands(labels, ious=ious, gt=[0] * 108)


def test_iou_balanced_bins_by_hand():
    c = iou_case()
    # quota: num 31, fraction 1/31 -> 1 positive, 30 negatives; 10 per bin: bin [0, .3) has 100,
    # bin [.3, .6) has 7 (all taken), bin [.6, .9) none; 13 short, refilled from the IoU set
    (w,) = IoUBalancedSampler(31, 1 / 31, num_bins=3)([c])
    neg = w[1:] > 0
    assert int(neg.sum()) == 30
    assert int(neg[100:].sum()) == 7 and int(neg[:100].sum()) == 23


def test_iou_balanced_floor_set_by_hand():
    c = iou_case()
    # floor_thr 0.1: the 50 at 0.05 form the floor set; floor_fraction 0.5: 15 from the IoU set
    # (57 candidates, 3 bins over [0.1, 0.9): widths 0.2667 -> bins [.1,.367) 55, [.367,.633) 2, [.633,.9) 0;
    # 5 per bin -> 5 + 2 + 0 = 7, refilled to 15 from the IoU set), then 15 from the floor set
    (w,) = IoUBalancedSampler(31, 1 / 31, num_bins=3, floor_thr=0.1, floor_fraction=0.5)([c])
    neg = w[1:] > 0
    assert int(neg[:50].sum()) == 15 and int(neg[50:].sum()) == 15
    assert int(neg[105:].sum()) == 2  # the whole small bin


def test_iou_balanced_takes_all_negatives_when_they_fit():
    c = cands([1, 0, 0, -1], ious=[0.8, 0.1, 0.2, 0.45])
    (w,) = IoUBalancedSampler(8, 0.25)([c])
    assert w.tolist() == [1, 1, 1, 0]


def test_instance_balanced_shares_by_hand():
    # 3 ground truths with 20, 3 and 1 positives; 9 wanted: per gt round(9/3) + 1 = 4 -> 4 + 3 + 1 = 8,
    # one more refilled from the rest (gt 0)
    gt = [0] * 20 + [1] * 3 + [2] * 1
    labels = [1] * 24 + [0] * 40
    c = cands(labels, ious=[0.7] * 24 + [0.1] * 40, gt=gt + [0] * 40)
    (w,) = InstanceBalancedSampler(18, 0.5)([c])
    kept_gt = torch.as_tensor(gt)[w[:24] > 0]
    assert torch.bincount(kept_gt, minlength=3).tolist() == [5, 3, 1]
    assert int(w[24:].sum()) == 9


def test_registry_holds_every_sampler():
    assert set(SAMPLERS.names()) == {"all", "random", "instance_balanced", "iou_balanced", "ohem", "focal", "isr_p",
                                     "random_pixels", "class_balanced_pixels", "ohem_pixels", "score_hlr"}


def test_bad_settings_are_refused():
    with pytest.raises(ValueError):
        RandomSampler(0, 0.5)
    with pytest.raises(ValueError):
        RandomSampler(16, 0.0)
    with pytest.raises(ValueError):
        OHEMSampler(mode="top")
    with pytest.raises(ValueError):
        IoUBalancedSampler(num_bins=0)


def test_iou_balanced_draws_are_uniform_within_and_across_bins():
    """The refill after the bins is uniform over every leftover, whichever bin it is in:
    bins [0, .3) with 40 negatives and [.3, .6) with 12, 10 from each, then 10 more from the
    32 left, so bin [.3, .6) keeps 10 + 10 * 2/32 = 10.625 on average and each negative of
    bin [0, .3) is kept with probability (10 + 10 * 30/32) / 40 = 0.484375."""
    ious = [0.9] + [0.1] * 40 + [0.4] * 12 + [0.05] * 8
    c = cands([1] + [0] * 60, ious=ious, gt=[0] * 61)
    sampler = IoUBalancedSampler(31, 1 / 31, num_bins=3, floor_thr=0.07, floor_fraction=0.0)
    torch.manual_seed(0)
    draws = torch.stack([sampler([c])[0] for _ in range(4000)])
    assert (draws[:, 1:].sum(1) == 30).all() and (draws[:, 53:] == 0).all()  # the IoU set fills the quota
    assert abs(float(draws[:, 41:53].sum(1).mean()) - 10.625) < 0.03
    frequency = draws[:, 1:41].mean(0)
    assert (frequency - 0.484375).abs().max() < 0.035  # ~4.4 standard errors
    assert abs(float(frequency.mean()) - 0.484375) < 0.004


def test_iou_balanced_batches_images_of_any_size():
    empty = cands([], ious=[], gt=[])
    c = iou_case()
    out = IoUBalancedSampler(31, 1 / 31)([empty, c, empty])
    assert [len(w) for w in out] == [0, 108, 0] and int(out[1].sum()) == 31
    assert IoUBalancedSampler()([]) == []
