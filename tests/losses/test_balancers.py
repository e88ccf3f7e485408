"""Balancers, class weights and prior initialisation against values worked out by hand."""

import math

import pytest
import torch

from detimb.losses.statistics import ClassStatistics
from detimb.losses import CARL, BalanceContext, CrossEntropyLoss, Form, GuidedLoss, init_classification_prior


def context(logits, labels, box_loss, avg=4.0, sigmoid=False):
    labels = torch.as_tensor(labels)
    return BalanceContext(cls_logits=logits, labels=labels, positive=torch.where(labels > 0)[0], box_loss=box_loss,
                          avg_factor=avg, form=Form.SIGMOID if sigmoid else Form.SOFTMAX, cls_term="cls",
                          reg_term="reg")


def test_carl_value_and_gradient_by_hand():
    # positives: softmax scores of the true class 3/4 and 1/2 -> w = 0.2 + 0.8 s = 0.8, 0.6, rescaled to
    # sum 2: 8/7, 6/7; box losses 1 and 2, avg_factor 4: (8/7 + 12/7) / 4 = 5/7
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0], [2.0, 0.0]], requires_grad=True)
    out = CARL(k=1.0, bias=0.2)({"cls": torch.tensor(0.0), "reg": torch.tensor(0.0)},
                                context(logits, [1, 1, 0], torch.tensor([1.0, 2.0])))
    assert out["loss_carl"].item() == pytest.approx(5 / 7, rel=1e-6)
    out["loss_carl"].backward()
    # d/dz: (n / A) (L0 S - sum u L) / S^2 * (1 - bias) * s0 (1 - s0), S = 1.4, sum u L = 2.0
    want = 0.5 * (1.4 - 2.0) / 1.96 * 0.8 * 0.75 * 0.25
    assert logits.grad[0, 1].item() == pytest.approx(want, rel=1e-5)
    assert logits.grad[0, 1] != 0 and logits.grad[2].abs().sum() == 0  # negatives get no CARL gradient


def test_carl_sigmoid_scores_and_no_positives():
    logits = torch.tensor([[0.0, 0.0, math.log(3.0)]], requires_grad=True)  # sigmoid(ln 3) = 3/4
    out = CARL(k=2.0, bias=0.0)({}, context(logits, [2], torch.tensor([3.0]), avg=1.0, sigmoid=True))
    assert out["loss_carl"].item() == pytest.approx(3.0)  # one positive: w rescaled to 1
    empty = CARL()({}, context(logits, [0], torch.zeros(0)))
    assert empty["loss_carl"].item() == 0.0 and empty["loss_carl"].requires_grad


def test_guided_per_iteration_ratio_and_gradient_scale():
    cls = torch.tensor(2.0, requires_grad=True)
    reg = torch.tensor(0.5, requires_grad=True)
    out = GuidedLoss()({"cls": cls, "reg": reg}, context(torch.zeros(1, 2), [0], torch.zeros(0)))
    assert out["cls"].item() == pytest.approx(0.5)  # r = 0.5 / 2
    out["cls"].backward()
    assert cls.grad.item() == pytest.approx(0.25) and reg.grad is None  # r carries no gradient


def test_guided_frozen_averages_the_warmup_then_holds():
    g = GuidedLoss(mode="frozen", warmup_iters=2)
    ctx = context(torch.zeros(1, 2), [0], torch.zeros(0))
    for cls, reg, want in ((2.0, 0.5, 0.25), (1.0, 0.5, 0.5), (1.0, 3.0, 0.375), (5.0, 1.0, 0.375)):
        out = g({"cls": torch.tensor(cls), "reg": torch.tensor(reg)}, ctx)
        assert out["cls"].item() == pytest.approx(cls * want)
    state = g.state_dict()  # the frozen ratio lives in checkpoints
    assert int(state["count"]) == 2 and float(state["ratio_sum"]) == pytest.approx(0.75)


def test_prior_initialisation():
    bias = torch.zeros(4)
    init_classification_prior(bias, 0.01, softmax=False)
    assert torch.allclose(bias, torch.full((4,), -math.log(0.99 / 0.01)))
    bias = torch.zeros(4)  # background + 3 classes
    init_classification_prior(bias, 0.2, softmax=True)
    probs = torch.softmax(bias, 0)
    assert probs[0].item() == pytest.approx(0.8) and torch.allclose(probs[1:], torch.full((3,), 0.2 / 3))


def test_class_weights_from_counts_by_hand():
    counts = [1000, 10]
    stats = ClassStatistics.from_instances(counts)
    # instance-weighted: 1/n scaled so that 1000 w1 + 10 w2 = 1010 -> 1010/2000, 1010/20
    inv = CrossEntropyLoss(class_weight="inverse_freq", class_stats=stats, normalize="instances").weights
    assert inv.tolist() == pytest.approx([1.0, 0.505, 50.5], rel=1e-6)
    # Cui et al.'s convention (the default): mean 1 over the classes
    inv = CrossEntropyLoss(class_weight="inverse_freq", class_stats=stats).weights
    assert inv.tolist() == pytest.approx([1.0, 2 * 0.001 / 0.101, 2 * 0.1 / 0.101], rel=1e-6)
    beta = 0.999
    e = [(1 - beta**n) / (1 - beta) for n in counts]
    raw = [1 / x for x in e]
    eff = CrossEntropyLoss(class_weight="effective_num", beta=beta, class_stats=stats, normalize="classes").weights
    assert eff.tolist() == pytest.approx([1.0] + [2 * r / sum(raw) for r in raw], rel=1e-5)
    eff = CrossEntropyLoss(class_weight="effective_num", beta=beta, class_stats=stats, normalize="instances").weights
    scale = 1010 / (1000 * raw[0] + 10 * raw[1])
    assert eff.tolist() == pytest.approx([1.0, raw[0] * scale, raw[1] * scale], rel=1e-5)
    assert 1000 * eff[1].item() + 10 * eff[2].item() == pytest.approx(1010, rel=1e-5)  # average instance: 1
    # the most frequent class keeps background's weight: 1/n -> 1, 1000/10
    inv = CrossEntropyLoss(class_weight="inverse_freq", class_stats=stats, normalize="frequent").weights
    assert inv.tolist() == pytest.approx([1.0, 1.0, 100.0], rel=1e-6)
    # the loss applies them per candidate: one sample of class 2 with uniform logits
    loss = CrossEntropyLoss(class_weight=[1.0, 1.0, 3.0])(torch.zeros(1, 3), torch.tensor([2]), None, 1)
    assert loss.item() == pytest.approx(3 * math.log(3), rel=1e-6)


def test_class_weights_without_counts_refuse_to_train_but_load():
    loss = CrossEntropyLoss(class_weight="inverse_freq")
    with pytest.raises(ValueError, match="needs the training set's class counts"):
        loss(torch.zeros(1, 3), torch.tensor([1]))
    trained = CrossEntropyLoss(class_weight="inverse_freq", class_stats=ClassStatistics.from_instances([5, 50]))
    loss.load_state_dict(trained.state_dict())
    assert torch.equal(loss.weights, trained.weights)
    loss(torch.zeros(1, 3), torch.tensor([1]))
