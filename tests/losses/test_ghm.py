"""GHM-C and GHM-R against bin densities counted by hand."""

import math

import pytest
import torch

from detimb.losses import GHMCLoss, GHMRLoss


def logit(p: float) -> float:
    return math.log(p / (1 - p))


P = [0.05, 0.07, 0.15, 0.95, 0.5]  # targets 0, so g = p: bins 0, 0, 1, 9, 5 of 10


def bce0(p: float) -> float:
    return -math.log(1 - p)


def test_ghm_c_bin_densities_by_hand():
    loss = GHMCLoss(bins=10, momentum=0.0)
    logits = torch.tensor([[logit(p) for p in P]])
    # 4 non-empty bins, tot = 5: bin 0 holds 2 (weight 5 / 2 / 4), the others 1 (5 / 1 / 4)
    w = [0.625, 0.625, 1.25, 1.25, 1.25]
    want = sum(wi * bce0(p) for wi, p in zip(w, P)) / 5
    assert loss(logits, torch.zeros(1, 5)).item() == pytest.approx(want, rel=1e-5)
    # a candidate the sampler dropped (weight 0) is out of the count: 4 valid, bins 0, 0, 1, 9
    weight = torch.tensor([1.0])
    two = torch.cat([logits, torch.zeros(1, 5)])
    value = loss(two, torch.zeros(2, 5), torch.cat([weight, torch.zeros(1)]))
    assert value.item() == pytest.approx(want, rel=1e-5)


def test_ghm_c_momentum_by_hand():
    loss = GHMCLoss(bins=10, momentum=0.75)
    loss.train()
    logits = torch.tensor([[logit(p) for p in P]], requires_grad=True)
    # first step: acc = 0.25 * counts -> bin 0: 0.5, others 0.25; weights tot / acc / n
    w = [5 / 0.5 / 4] * 2 + [5 / 0.25 / 4] * 3
    value = loss(logits, torch.zeros(1, 5))
    assert value.item() == pytest.approx(sum(wi * bce0(p) for wi, p in zip(w, P)) / 5, rel=1e-5)
    acc = [0.5, 0.25, 0, 0, 0, 0.25, 0, 0, 0, 0.25]
    assert loss.density.acc_sum.tolist() == pytest.approx(acc)
    loss(logits, torch.zeros(1, 5))  # second step: 0.75 * acc + 0.25 * counts on the non-empty bins
    assert loss.density.acc_sum.tolist() == pytest.approx([0.75 * a + 0.25 * c for a, c in
                                                           zip(acc, [2, 1, 0, 0, 0, 1, 0, 0, 0, 1])])


def test_ghm_r_by_hand():
    mu = 0.02
    loss = GHMRLoss(mu=mu, bins=10, momentum=0.0)
    d = [0.0, 0.02, 0.2, 1.0]  # g = 0, 0.707, 0.995, 0.9998: bins 0, 7, 9, 9; n = 3, tot = 4
    w = [4 / 1 / 3, 4 / 1 / 3, 4 / 2 / 3, 4 / 2 / 3]
    asl1 = [math.sqrt(x * x + mu * mu) - mu for x in d]
    pred = torch.tensor([d], requires_grad=True)
    value = loss(pred, torch.zeros(1, 4))
    assert value.item() == pytest.approx(sum(a * b for a, b in zip(w, asl1)) / 4, rel=1e-5)
    value.backward()  # d ASL1 / dd = d / sqrt(d^2 + mu^2), times the (constant) weight over tot
    assert pred.grad.tolist()[0] == pytest.approx([wi * x / math.sqrt(x * x + mu * mu) / 4 for wi, x in zip(w, d)],
                                                  rel=1e-5)
