"""Pixel samplers on hand-built label and loss maps."""

import math

import torch

from detimb.samplers import ClassBalancedPixelSampler, OHEMPixelSampler, RandomPixelSampler
from tests.samplers.helpers import cands


def hand_map():
    """Eight pixels with true-class probabilities chosen by hand (loss -ln p); pixel 6 ignored."""
    probs = [0.9, 0.2, 0.65, 0.71, 0.05, 0.99, 0.5, 0.8]
    return cands([0, 1, 1, 0, 2, 0, -1, 0], losses=[-math.log(p) for p in probs])


def test_ohem_pixels_threshold_keeps_low_confidence_pixels():
    c = hand_map()
    (w,) = OHEMPixelSampler(thresh=0.7, min_kept=1)([c])
    # p < 0.7 and not ignored: indices 1 (0.2), 2 (0.65), 4 (0.05); index 6 is ignored
    assert w.tolist() == [0, 1, 1, 0, 1, 0, 0, 0]


def test_ohem_pixels_min_kept_raises_the_threshold():
    c = hand_map()
    # 5 per image: the five least confident valid pixels are 0.05, 0.2, 0.65, 0.71, 0.8
    (w,) = OHEMPixelSampler(thresh=0.7, min_kept=5)([c])
    assert w.tolist() == [0, 1, 1, 1, 1, 0, 0, 1]
    # more than there are: every valid pixel
    (w,) = OHEMPixelSampler(thresh=0.7, min_kept=50)([c])
    assert w.tolist() == [1, 1, 1, 1, 1, 1, 0, 1]


def test_ohem_pixels_top_k_mode_counts_the_whole_batch():
    a = cands([0, 0, 1, 1], losses=[0.1, 3.0, 0.2, 2.0])
    b = cands([0, 2, -1, 0], losses=[5.0, 0.3, 9.0, 0.05])
    wa, wb = OHEMPixelSampler(thresh=None, min_kept=2)([a, b])  # k = 2 per image x 2 images
    assert wa.tolist() == [0, 1, 0, 1] and wb.tolist() == [1, 1, 0, 0]


def test_random_pixels_draws_num_non_ignored_pixels():
    labels = [0] * 50 + [1] * 30 + [-1] * 20
    (w,) = RandomPixelSampler(num=40)([cands(labels)])
    assert int(w.sum()) == 40 and w[80:].sum() == 0
    (w,) = RandomPixelSampler(num=1000)([cands(labels)])
    assert int(w.sum()) == 80


def test_class_balanced_pixels_gives_each_present_class_an_equal_share():
    labels = [0] * 500 + [1] * 60 + [2] * 5 + [-1] * 30
    (w,) = ClassBalancedPixelSampler(num=120)([cands(labels)])
    lab = torch.tensor(labels)
    kept = lab[w > 0]
    # three classes present -> 40 each; class 2 has only 5
    assert torch.bincount(kept, minlength=3).tolist() == [40, 40, 5]
    assert (lab[w > 0] >= 0).all()
