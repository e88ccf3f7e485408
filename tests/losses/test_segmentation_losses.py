"""Pixel losses against hand-computed values."""

import math

import pytest
import torch
import torch.nn.functional as F

from detimb.losses import (
    Form,
    CLS_LOSSES, AsymmetricFocalLoss, AsymmetricLargeMarginLoss, DiceLoss, FocalLoss, binary_as_two_class,
)

SOFTMAX = [n for n in CLS_LOSSES.names() if CLS_LOSSES.get(n).form is Form.SOFTMAX]


def softmax_p(logits, k):
    e = [math.exp(v) for v in logits]
    return e[k] / sum(e)


def test_focal_matches_the_formula_by_hand():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    targets = torch.tensor([0, 2])
    want = []
    for row, t in zip(logits.tolist(), targets.tolist()):
        p = softmax_p(row, t)
        want.append(-((1 - p) ** 2) * math.log(p))
    got = FocalLoss(gamma=2.0)(logits, targets)
    assert got.item() == pytest.approx(sum(want) / 2, rel=1e-6)
    # alpha: 0.25 on the foreground candidate (target 2), 0.75 on the background one
    got_alpha = FocalLoss(gamma=2.0, alpha=0.25)(logits, targets)
    assert got_alpha.item() == pytest.approx((0.75 * want[0] + 0.25 * want[1]) / 2, rel=1e-6)


def test_focal_with_gamma_zero_is_cross_entropy():
    logits, targets = torch.randn(20, 4), torch.randint(0, 4, (20,))
    assert FocalLoss(gamma=0.0)(logits, targets).item() == pytest.approx(F.cross_entropy(logits, targets).item(),
                                                                         rel=1e-6)


def test_dice_by_hand():
    # two classes, three candidates; probabilities worked out by hand from the logits
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0], [0.0, math.log(3.0)]])
    targets = torch.tensor([1, 0, 1])
    p1 = [0.5, 0.25, 0.75]  # softmax probability of class 1
    p0 = [1 - v for v in p1]
    dice0 = 2 * p0[1] / (sum(p0) + 1)
    dice1 = 2 * (p1[0] + p1[2]) / (sum(p1) + 2)
    want = ((1 - dice0) + (1 - dice1)) / 2
    assert DiceLoss()(logits, targets).item() == pytest.approx(want, rel=1e-6)
    # class weights: a weighted mean over the classes present
    got = DiceLoss(class_weight=[1.0, 3.0])(logits, targets).item()
    assert got == pytest.approx(((1 - dice0) + 3 * (1 - dice1)) / 4, rel=1e-6)
    # without background only class 1 counts
    assert DiceLoss(include_background=False)(logits, targets).item() == pytest.approx(1 - dice1, rel=1e-6)


def test_dice_leaves_out_classes_absent_from_the_targets():
    logits = torch.tensor([[0.0, 0.0, 5.0], [3.0, 0.0, 0.0]])
    targets = torch.tensor([0, 0])
    p = torch.softmax(logits, -1)[:, 0]
    want = 1 - 2 * p.sum() / (p.sum() + 2)
    assert DiceLoss()(logits, targets).item() == pytest.approx(want.item(), rel=1e-6)


def test_asymmetric_large_margin_subtracts_the_margin_only_for_rare_truths():
    logits = torch.tensor([[2.0, 1.0, 0.0], [2.0, 1.0, 0.0]])
    targets = torch.tensor([1, 2])  # class 1 rare, class 2 not
    loss = AsymmetricLargeMarginLoss(margin=1.0, rare_classes=[1])(logits, targets)
    rare_term = math.log(math.exp(2) + math.exp(0) + math.exp(0)) - 0.0  # true logit 1 - 1 = 0
    plain_term = math.log(math.exp(2) + math.exp(1) + math.exp(0)) - 0.0
    assert loss.item() == pytest.approx((rare_term + plain_term) / 2, rel=1e-6)
    # no rare classes: plain cross-entropy
    plain = AsymmetricLargeMarginLoss(margin=1.0)(logits, targets)
    assert plain.item() == pytest.approx(F.cross_entropy(logits, targets).item(), rel=1e-6)


def test_asymmetric_focal_keeps_plain_cross_entropy_for_rare_classes():
    logits = torch.tensor([[0.3, 1.2, -0.4], [0.3, 1.2, -0.4]])
    targets = torch.tensor([2, 1])  # class 2 rare
    loss = AsymmetricFocalLoss(gamma=2.0, rare_classes=[2])
    ce = F.cross_entropy(logits, targets, reduction="none")
    p1 = softmax_p(logits[1].tolist(), 1)
    want = ce[0].item() + (1 - p1) ** 2 * ce[1].item()
    assert loss(logits, targets).item() == pytest.approx(want / 2, rel=1e-6)
    # per candidate: the rare one equals CE exactly
    w = torch.tensor([1.0, 0.0])
    assert loss(logits, targets, w, 1.0).item() == pytest.approx(ce[0].item(), rel=1e-6)


def test_binary_as_two_class_cross_entropy_is_bce():
    x, t = torch.randn(50), torch.randint(0, 2, (50,))
    ce = CLS_LOSSES.build({"type": "cross_entropy"}, "t")(binary_as_two_class(x), t)
    assert ce.item() == pytest.approx(F.binary_cross_entropy_with_logits(x, t.float()).item(), rel=1e-5)


@pytest.mark.parametrize("name", SOFTMAX)
def test_every_softmax_loss_keeps_the_shape_contract(name):
    """(N, C) logits, (N,) targets, (N,) weights; zero weights give zero; gradients flow."""
    torch.manual_seed(0)
    logits = torch.randn(30, 4, requires_grad=True)
    targets = torch.randint(0, 4, (30,))
    loss = CLS_LOSSES.build({"type": name}, "t")
    value = loss(logits, targets, torch.rand(30), 30.0)
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
    assert loss(logits, targets, torch.zeros(30), 30.0).item() == pytest.approx(0.0, abs=1e-7)


def test_rare_classes_must_be_foreground_labels():
    with pytest.raises(ValueError, match="foreground"):
        AsymmetricFocalLoss(rare_classes=[0])
