"""Box losses against the papers' formulas worked by hand and torchvision.ops."""

import math

import pytest
import torch
from torchvision.ops import complete_box_iou_loss, distance_box_iou_loss, generalized_box_iou_loss

from detimb.losses import BOX_LOSSES
from detimb.losses.regression import BalancedL1Loss, CIoULoss, DIoULoss, GIoULoss, IoULoss

B = math.e**3 - 1  # b = e^(gamma / alpha) - 1 with alpha 0.5, gamma 1.5


def balanced_l1_by_hand(x, alpha=0.5, gamma=1.5, beta=1.0):
    b = math.e ** (gamma / alpha) - 1
    if x < beta:
        return alpha / b * (b * x + 1) * math.log(b * x / beta + 1) - alpha * x
    return gamma * x + gamma / b - alpha * beta


@pytest.mark.parametrize("x", [0.0, 0.1, 0.5, 0.999, 1.0, 1.7, 3.0])
def test_balanced_l1_values_by_hand(x):
    pred = torch.tensor([[x, 0.0, 0.0, 0.0]])
    got = BalancedL1Loss().per_box(pred, torch.zeros(1, 4)).item()
    assert got == pytest.approx(balanced_l1_by_hand(x), abs=1e-6)


def test_balanced_l1_value_at_half_worked_out():
    # 0.5 / b * (b/2 + 1) * ln(b/2 + 1) - 0.25 with b = e^3 - 1
    want = 0.5 / B * (B / 2 + 1) * math.log(B / 2 + 1) - 0.25
    assert want == pytest.approx(0.40058, abs=1e-4)
    assert BalancedL1Loss().per_box(torch.tensor([[0.5, 0, 0, 0]]), torch.zeros(1, 4)).item() == pytest.approx(want)


@pytest.mark.parametrize("x,grad", [(0.5, 0.5 * math.log(B * 0.5 + 1)), (0.2, 0.5 * math.log(B * 0.2 + 1)),
                                    (2.0, 1.5), (-2.0, -1.5)])
def test_balanced_l1_gradients(x, grad):
    pred = torch.tensor([[x, 0.0, 0.0, 0.0]], requires_grad=True)
    BalancedL1Loss().per_box(pred, torch.zeros(1, 4)).sum().backward()
    assert pred.grad[0, 0].item() == pytest.approx(grad, rel=1e-5)


def test_balanced_l1_is_continuous_with_continuous_gradient_at_beta():
    inside, outside = balanced_l1_by_hand(1.0 - 1e-9), balanced_l1_by_hand(1.0)
    assert inside == pytest.approx(outside, abs=1e-6)
    assert 0.5 * math.log(B + 1) == pytest.approx(1.5)  # alpha ln(b + 1) = gamma: the gradient joins too


BOX_A = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
BOX_B = torch.tensor([[1.0, 1.0, 3.0, 3.0]])


def test_iou_family_by_hand():
    # intersection 1, union 7, enclosing box 3x3 (area 9, diagonal^2 18), centres 2 apart (squared)
    iou = 1 / 7
    assert IoULoss().per_box(BOX_A, BOX_B).item() == pytest.approx(1 - iou, abs=1e-6)
    assert GIoULoss().per_box(BOX_A, BOX_B).item() == pytest.approx(1 - iou + (9 - 7) / 9, abs=1e-6)
    assert DIoULoss().per_box(BOX_A, BOX_B).item() == pytest.approx(1 - iou + 2 / 18, abs=1e-6)
    assert CIoULoss().per_box(BOX_A, BOX_B).item() == pytest.approx(1 - iou + 2 / 18, abs=1e-6)  # same aspect


def test_iou_family_equals_torchvision_ops():
    torch.manual_seed(0)
    xy = torch.rand(50, 2) * 10
    a = torch.cat([xy, xy + torch.rand(50, 2) * 5 + 0.5], 1)
    b = a + torch.randn(50, 4) * 0.8
    b[:, 2:] = torch.maximum(b[:, 2:], b[:, :2] + 0.1)
    for ours, theirs in ((GIoULoss(), generalized_box_iou_loss), (DIoULoss(), distance_box_iou_loss),
                         (CIoULoss(), complete_box_iou_loss)):
        assert torch.allclose(ours.per_box(a, b), theirs(a, b, reduction="none", eps=1e-7), atol=1e-6)


def test_gated_ciou_drops_the_aspect_term_below_half_iou():
    low = (torch.tensor([[0.0, 0.0, 10.0, 4.0]]), torch.tensor([[0.0, 0.0, 9.0, 9.0]]))  # IoU 36/85 < 0.5
    high = (torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.tensor([[1.0, 1.0, 11.0, 12.0]]))  # IoU 81/129 > 0.5
    assert CIoULoss(gated=True).per_box(*low).item() == pytest.approx(DIoULoss().per_box(*low).item(), abs=1e-6)
    assert CIoULoss(gated=True).per_box(*high).item() == pytest.approx(CIoULoss().per_box(*high).item(), abs=1e-6)
    assert CIoULoss().per_box(*low).item() > DIoULoss().per_box(*low).item()


@pytest.mark.parametrize("name", BOX_LOSSES.names())
def test_empty_input_gives_zero_with_graph(name):
    pred = torch.zeros(0, 4, requires_grad=True)
    loss = BOX_LOSSES.build({"type": name}, "t")(pred, torch.zeros(0, 4), torch.zeros(0), 4)
    loss.backward()
    assert loss.item() == 0.0 and pred.grad is not None


def test_loss_weight_scales():
    a = BOX_LOSSES.build({"type": "giou", "loss_weight": 10.0}, "t")(BOX_A, BOX_B, None, 1)
    assert a.item() == pytest.approx(10 * GIoULoss().per_box(BOX_A, BOX_B).item())


def test_bounded_iou_by_hand():
    from detimb.losses import BoundedIoULoss

    pred = torch.tensor([[0.0, 0.0, 10.0, 10.0]], requires_grad=True)
    target = torch.tensor([[2.0, 0.0, 12.0, 10.0]])
    eps, beta = 1e-3, 0.2
    # centres 5 vs 7 in x (|dx| = 2), equal in y; sizes 10 vs 10
    x = 1 - (10 - 4) / (10 + 4 + eps)   # 0.5715 > beta: x - beta / 2
    y = 1 - 10 / (10 + eps)              # 1e-4 < beta: 0.5 y^2 / beta
    w = 1 - 10 / (10 + eps)
    smooth = lambda t: t - beta / 2 if t >= beta else 0.5 * t * t / beta  # noqa: E731
    want = smooth(x) + smooth(y) + smooth(w) + smooth(w)
    loss = BoundedIoULoss(beta=beta, eps=eps)
    assert loss.per_box(pred, target).item() == pytest.approx(want, rel=1e-5)
    loss(pred, target, None, 1.0).backward()
    # d(x term)/d(pred x0): the centre moves by half of it, |dx| shrinks: the loss falls as x0 grows
    assert pred.grad[0, 0] < 0 and torch.isfinite(pred.grad).all()
    same = target.double()  # a perfect box still pays the eps terms: 4 x 0.5 (1 - 10 / 10.001)^2 / beta
    assert BoundedIoULoss().per_box(same, same).item() == pytest.approx(4 * 0.5 * (1 - 10 / 10.001) ** 2 / 0.2,
                                                                        rel=1e-6)


def test_ciou_on_a_zero_height_prediction_is_finite_and_torchvision_elsewhere():
    from torchvision.ops import complete_box_iou_loss

    from detimb.losses import CIoULoss

    pred = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 5.0, 5.0]], requires_grad=True)  # the second is a point
    target = torch.tensor([[1.0, 1.0, 9.0, 12.0], [4.0, 4.0, 8.0, 8.0]])
    loss = CIoULoss().per_box(pred, target)
    assert torch.isfinite(loss).all()
    assert loss[0].item() == pytest.approx(complete_box_iou_loss(pred[:1], target[:1], eps=1e-7).item(), rel=1e-6)
    # the point (5, 5): IoU 0; centre distance 1^2 + 1^2 = 2 over the enclosing diagonal 4^2 + 4^2 = 32;
    # v = 4 / pi^2 (atan(4 / 4) - atan(0))^2 = 1/4, alpha = v / (1 + v) = 1/5: 1 + 1/16 + 1/20
    assert loss[1].item() == pytest.approx(1 + 2 / 32 + 0.2 * 0.25, rel=1e-5)
    loss.sum().backward()
    assert torch.isfinite(pred.grad).all()
