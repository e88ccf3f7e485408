import math

import pytest
import torch

from detimb.losses import (
    BALANCERS, BOX_LOSSES, CLS_LOSSES, BinaryCrossEntropyLoss, CrossEntropyLoss, FixedWeights, L1Loss,
    SigmoidFocalLoss, SmoothL1Loss,
)


def test_smooth_l1_piecewise_values_by_hand():
    beta = 0.1
    pred = torch.tensor([[0.05, 0.3, -0.1, 0.0]])
    target = torch.zeros(1, 4)
    # 0.5 * 0.05^2 / 0.1 = 0.0125; 0.3 - 0.05 = 0.25; |x| = beta -> beta - 0.05 = 0.05; 0
    loss = SmoothL1Loss(beta)(pred, target, avg_factor=1)
    assert loss.item() == pytest.approx(0.0125 + 0.25 + 0.05 + 0.0)


def test_weights_and_avg_factor():
    pred = torch.tensor([[1.0, 0, 0, 0], [2.0, 0, 0, 0]])
    target = torch.zeros(2, 4)
    # L1 per box 1 and 2, weights 0.5 and 2 -> 0.5 + 4 = 4.5, / 3
    assert L1Loss()(pred, target, torch.tensor([0.5, 2.0]), 3).item() == pytest.approx(1.5)
    assert L1Loss(loss_weight=2.0)(pred, target).item() == pytest.approx(3.0)  # mean over 2 boxes, x2


def test_empty_input_gives_zero_with_graph():
    pred = torch.zeros(0, 4, requires_grad=True)
    loss = SmoothL1Loss()(pred, torch.zeros(0, 4), torch.zeros(0), 5)
    loss.backward()
    assert loss.item() == 0.0 and pred.grad is not None


def test_cross_entropy_by_hand():
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    labels = torch.tensor([0, 1])
    want = (-math.log(math.e**2 / (math.e**2 + 1)) - math.log(0.5)) / 2
    assert CrossEntropyLoss()(logits, labels, torch.ones(2), 2).item() == pytest.approx(want, rel=1e-6)


def test_binary_cross_entropy_by_hand():
    logits = torch.tensor([0.0, 2.0])
    targets = torch.tensor([1.0, 0.0])
    want = (math.log(2) + math.log(1 + math.e**2)) / 2
    assert BinaryCrossEntropyLoss()(logits, targets).item() == pytest.approx(want, rel=1e-6)


def test_sigmoid_focal_by_hand():
    # one positive logit 0 (p = 0.5) and one negative logit 0: alpha_t (1 - p_t)^2 * ln 2
    logits = torch.tensor([[0.0, 0.0]])
    targets = torch.tensor([[1.0, 0.0]])
    want = 0.25 * 0.25 * math.log(2) + 0.75 * 0.25 * math.log(2)
    assert SigmoidFocalLoss()(logits, targets, None, 1).item() == pytest.approx(want, rel=1e-6)
    # alpha < 0 disables alpha: 2 * 0.25 ln 2
    assert SigmoidFocalLoss(alpha=-1)(logits, targets, None, 1).item() == pytest.approx(0.5 * math.log(2), rel=1e-6)


def test_fixed_balancer():
    losses = {"a": torch.tensor(1.0), "b": torch.tensor(2.0)}
    assert {k: v.item() for k, v in FixedWeights({"b": 3.0})(losses).items()} == {"a": 1.0, "b": 6.0}
    with pytest.raises(KeyError, match="does not produce"):
        FixedWeights({"c": 1.0})(losses)


def test_registries_list_the_spine_members():
    assert {"cross_entropy", "binary_cross_entropy", "sigmoid_focal"} <= set(CLS_LOSSES.names())
    assert {"smooth_l1", "l1"} <= set(BOX_LOSSES.names())
    assert "fixed" in BALANCERS.names()
