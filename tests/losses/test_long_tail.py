"""Seesaw, EQL, EQLv2 and the federated loss against values worked out by hand."""

import math

import pytest
import torch

from detimb.losses import BatchClasses, ClassStatistics, EQLLoss, EQLv2Loss, FederatedLoss, SeesawLoss


def test_seesaw_mitigation_by_hand():
    loss = SeesawLoss(p=0.8, q=2.0)
    loss.cum_samples = torch.tensor([0.0, 100.0, 10.0], dtype=torch.float64)  # background, class 1, class 2
    # a class-1 sample, uniform logits: class 2 (rarer) is shifted by log(0.1^0.8); background keeps 1
    value = loss.elementwise(torch.zeros(1, 3), torch.tensor([1]))
    assert value.item() == pytest.approx(math.log(2 + 0.1**0.8), rel=1e-6)
    # a class-2 sample: class 1 is more frequent, no mitigation -> plain CE log 3
    assert loss.elementwise(torch.zeros(1, 3), torch.tensor([2])).item() == pytest.approx(math.log(3), rel=1e-6)
    # a background sample: factors 1 -> plain CE
    assert loss.elementwise(torch.zeros(1, 3), torch.tensor([0])).item() == pytest.approx(math.log(3), rel=1e-6)


def test_seesaw_compensation_and_gradient_by_hand():
    loss = SeesawLoss(p=0.8, q=2.0)
    loss.cum_samples = torch.tensor([0.0, 50.0, 50.0], dtype=torch.float64)
    logits = torch.tensor([[0.0, 0.0, 2.0]], requires_grad=True)
    # sigma_2 / sigma_1 = e^2 > 1 -> factor e^4 on class 2: adjusted logits (0, 0, 6)
    value = loss.elementwise(logits, torch.tensor([1]))
    assert value.item() == pytest.approx(math.log(2 + math.exp(6)), rel=1e-6)
    value.sum().backward()
    z = 2 + math.exp(6)  # the factors carry no gradient: softmax of the adjusted logits minus the one-hot
    assert logits.grad.tolist()[0] == pytest.approx([1 / z, 1 / z - 1, math.exp(6) / z], rel=1e-5)


def test_seesaw_objectness_layout_by_hand():
    loss = SeesawLoss(objectness=True)
    assert loss.roi_outputs(3) == 4  # background objectness, 2 classes, foreground objectness
    loss.cum_samples = torch.tensor([0.0, 100.0, 10.0], dtype=torch.float64)
    values = loss.elementwise(torch.zeros(2, 4), torch.tensor([0, 1]))
    assert values.tolist() == pytest.approx([math.log(2), math.log(2) + math.log(1 + 0.1**0.8)], rel=1e-6)
    assert loss.roi_scores(torch.zeros(1, 4)).tolist()[0] == pytest.approx([0.25, 0.25])


def test_seesaw_counts_accumulate_in_training_steps_only():
    loss = SeesawLoss()
    loss.train()
    loss(torch.zeros(4, 3, requires_grad=True), torch.tensor([0, 1, 1, 2]))
    assert loss.cum_samples.tolist() == [1.0, 2.0, 1.0]
    with torch.no_grad():  # a sampler's scoring pass leaves the counts
        loss(torch.zeros(2, 3), torch.tensor([1, 1]))
    loss.eval()
    loss(torch.zeros(2, 3), torch.tensor([1, 1]))
    assert loss.cum_samples.tolist() == [1.0, 2.0, 1.0]
    restored = SeesawLoss()
    restored.load_state_dict(loss.state_dict())
    assert restored.cum_samples.tolist() == [1.0, 2.0, 1.0]


def test_eql_drops_tail_negatives_on_foreground_only():
    stats = ClassStatistics(instances=(50, 1, 50), images=(50, 1, 50), num_images=100)  # f = 0.5, 0.01, 0.5
    loss = EQLLoss(lambda_=0.05, class_stats=stats)
    assert loss.tail.tolist() == [0.0, 1.0, 0.0]
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])  # a class-1 proposal, a background one
    value = loss.elementwise(torch.zeros(2, 3), targets)
    # the foreground row loses class 2's (the tail's) negative term; background keeps all three
    assert value[0].tolist() == pytest.approx([math.log(2), 0.0, math.log(2)], rel=1e-6)
    assert value[1].tolist() == pytest.approx([math.log(2)] * 3, rel=1e-6)
    with pytest.raises(ValueError, match="class statistics"):
        EQLLoss().elementwise(torch.zeros(1, 3), torch.zeros(1, 3))



def test_eql_default_lambda_is_the_released_0_00177():
    # image frequencies 1765 / 1e6 (between the paper's 1.76e-3 and the released 1.77e-3),
    # 1775 / 1e6 (above both) and 1755 / 1e6 (below both)
    stats = ClassStatistics(instances=(1765, 1775, 1755), images=(1765, 1775, 1755), num_images=1_000_000)
    assert EQLLoss(class_stats=stats).tail.tolist() == [1.0, 0.0, 1.0]

def test_eqlv2_weights_and_accumulation_by_hand():
    loss = EQLv2Loss(gamma=12.0, mu=0.8, alpha=4.0)
    loss.pos_grad = torch.tensor([1.0, 4.0], dtype=torch.float64)
    loss.neg_grad = torch.tensor([2.0, 4.0], dtype=torch.float64)  # ratios 0.5 and 1.0
    neg = [1 / (1 + math.exp(-12 * (r - 0.8))) for r in (0.5, 1.0)]
    pos = [1 + 4 * (1 - n) for n in neg]
    targets = torch.tensor([[0.0, 1.0, 0.0]])  # column 0 background; a class-1 proposal
    value = loss.elementwise(torch.zeros(1, 3), targets)
    assert value.tolist()[0] == pytest.approx([math.log(2), pos[0] * math.log(2), neg[1] * math.log(2)], rel=1e-6)
    loss.train()
    loss(torch.zeros(1, 3, requires_grad=True), targets)
    # |dL/dx| = 0.5 at zero logits, times each element's weight
    assert loss.pos_grad.tolist() == pytest.approx([1.0 + 0.5 * pos[0], 4.0], rel=1e-6)
    assert loss.neg_grad.tolist() == pytest.approx([2.0, 4.0 + 0.5 * neg[1]], rel=1e-6)
    # scores: sigmoid(class) * (1 - sigmoid(background))
    assert loss.roi_scores(torch.zeros(1, 3)).tolist()[0] == pytest.approx([0.25, 0.25])


def test_eqlv2_first_step_weighs_one_and_state_round_trips():
    loss = EQLv2Loss()
    loss.train()
    targets = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    value = loss(torch.zeros(2, 3, requires_grad=True), targets, None, 2.0)
    assert value.item() == pytest.approx(3 * math.log(2), rel=1e-6)  # 6 elements of log 2, over 2
    assert loss.pos_grad.tolist() == pytest.approx([0.0, 0.5]) and loss.neg_grad.tolist() == pytest.approx([1.0, 0.5])
    restored = EQLv2Loss()
    restored.load_state_dict(loss.state_dict())
    assert torch.equal(restored.neg_grad, loss.neg_grad)


def test_federated_class_set_for_a_fixed_seed():
    stats = ClassStatistics(instances=(1, 4, 9, 16, 25), images=(1, 4, 9, 16, 25), num_images=30)
    loss = FederatedLoss(num_classes=3, freq_weight_power=0.5, class_stats=stats)
    assert loss.freq_weight.tolist() == pytest.approx([1, 2, 3, 4, 5])
    targets = torch.zeros(4, 5)
    targets[0, 2] = 1.0  # class 3 present; rows 1-3 background, which counts as one class
    torch.manual_seed(0)
    chosen = loss.class_set(targets, None)
    torch.manual_seed(0)  # the same draw by hand: one class among the absent ones, in proportion 1:2:4:5
    drawn = torch.multinomial(torch.tensor([1.0, 2.0, 0.0, 4.0, 5.0]), 1, replacement=False).item()
    assert torch.where(chosen)[0].tolist() == sorted({2, drawn}) and int(chosen.sum()) == 2
    # verified-absent classes are always in the set (labels are 1-based): 2 + 1 fixed with background
    assert torch.where(loss.class_set(targets, torch.tensor([1])))[0].tolist() == [0, 2]


def test_federated_draws_in_proportion_to_frequency():
    stats = ClassStatistics(instances=(1, 4, 9, 16), images=(1, 4, 9, 16), num_images=30)
    loss = FederatedLoss(num_classes=2, class_stats=stats)
    targets = torch.zeros(1, 4)
    targets[0, 3] = 1.0  # no background rows: one fixed class, one drawn from weights 1, 2, 3
    torch.manual_seed(0)
    counts = torch.zeros(4)
    for _ in range(3000):
        counts += loss.class_set(targets, None).float()
    assert counts[3] == 3000 and (counts[:3] / 3000).tolist() == pytest.approx([1 / 6, 2 / 6, 3 / 6], abs=0.03)


def test_federated_loss_counts_only_the_chosen_columns():
    stats = ClassStatistics(instances=(5, 5, 5), images=(5, 5, 5), num_images=10)
    loss = FederatedLoss(num_classes=1, class_stats=stats)
    targets = torch.tensor([[0.0, 1.0, 0.0]])  # one class present, the set is full without a draw
    value = loss(torch.zeros(1, 3), targets, None, 1.0)
    assert value.item() == pytest.approx(math.log(2), rel=1e-6)
    # RetinaNet's layout: column 0 (torchvision's background slot) always counts
    value = loss(torch.zeros(1, 4), torch.tensor([[0.0, 0.0, 1.0, 0.0]]), None, 1.0)
    assert value.item() == pytest.approx(2 * math.log(2), rel=1e-6)


def test_federated_loss_drops_negatives_where_labels_are_not_exhaustive():
    stats = ClassStatistics(instances=(5, 5, 5), images=(5, 5, 5), num_images=10)
    loss = FederatedLoss(num_classes=4, class_stats=stats)  # all three classes (background counts as one)
    targets = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])  # class 2 on candidate 0; candidate 1 background
    not_exhaustive = torch.zeros(2, 4, dtype=torch.bool)
    not_exhaustive[1, 1] = True  # candidate 1's image does not label class 1 exhaustively
    not_exhaustive[0, 2] = True  # nor candidate 0's class 2, which is its target: kept
    batch = BatchClasses(torch.zeros(0, dtype=torch.int64), not_exhaustive)
    torch.manual_seed(0)
    value = loss(torch.zeros(2, 3), targets, None, 1.0, batch=batch)
    assert value.item() == pytest.approx(5 * math.log(2), rel=1e-6)  # 6 terms, one dropped



def test_sigmoid_long_tail_gradients_are_weight_times_p_minus_y():
    """Each sigmoid loss's weights carry no gradient: dL/dx = w (sigmoid(x) - y) / N, with w
    the loss's own element weight worked out above for each."""
    from detimb.losses import GHMCLoss

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, generator=g)
    targets = torch.tensor([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])
    stats = ClassStatistics(instances=(9, 1, 9, 9), images=(9, 1, 9, 9), num_images=10)
    eqlv2 = EQLv2Loss()
    eqlv2.pos_grad = torch.tensor([4.0, 2.0, 1.0], dtype=torch.float64)  # columns 1-3; column 0 is background
    eqlv2.neg_grad = torch.tensor([4.0, 1.0, 1.0], dtype=torch.float64)
    fg = (targets.sum(1) > 0).float()[:, None]
    tail = torch.tensor([0.0, 1.0, 0.0, 0.0])  # f = 0.1 < 0.5 for class 2 only
    ratio = eqlv2.pos_grad / eqlv2.neg_grad
    neg = (1 / (1 + torch.exp(-12 * (ratio - 0.8)))).float()
    cases = {
        "eql": (EQLLoss(lambda_=0.5, class_stats=stats), 1 - fg * tail[None, :] * (1 - targets)),
        "eqlv2": (eqlv2, None),
        "federated": (FederatedLoss(num_classes=10, class_stats=stats), torch.ones(3, 4)),
    }
    pos_v2 = torch.cat([torch.ones(1), 1 + 4 * (1 - neg)])
    neg_v2 = torch.cat([torch.ones(1), neg])
    cases["eqlv2"] = (eqlv2, pos_v2[None, :] * targets + neg_v2[None, :] * (1 - targets))
    for name, (loss, weight) in cases.items():
        x = logits.clone().requires_grad_()
        loss.eval()  # no state update
        loss(x, targets, None, 3.0).backward()
        want = weight * (torch.sigmoid(logits) - targets) / 3.0
        assert torch.allclose(x.grad, want, atol=1e-6), name
    # GHM-C: w = tot / (count(bin) n) per element, over tot
    ghm = GHMCLoss(bins=10, momentum=0.0)
    x = logits.clone().requires_grad_()
    ghm(x, targets).backward()
    gnorm = (torch.sigmoid(logits) - targets).abs()
    index = torch.clamp((gnorm * 10).floor().long(), max=9)
    counts = torch.bincount(index.flatten(), minlength=10).float()
    w = 12 / counts[index] / int((counts > 0).sum())
    assert torch.allclose(x.grad, w * (torch.sigmoid(logits) - targets) / 12, atol=1e-6)
