"""Soft samplers against torchvision's focal loss and PISA's ISR-P worked by hand."""

import math

import pytest
import torch
from torchvision.ops import sigmoid_focal_loss

from detimb.losses import BinaryCrossEntropyLoss, CrossEntropyLoss
from detimb.samplers import FocalSampler, ISRPSampler, Normalization, ReweightContext
from tests.samplers.helpers import cands


def ctx(n, gt_ids=None, pred_ious=None, loss=None):
    return ReweightContext(torch.zeros(n, dtype=torch.int64) if gt_ids is None else gt_ids,
                           torch.zeros(n) if pred_ious is None else pred_ious, torch.ones(n) if loss is None else loss)


@pytest.mark.parametrize("alpha", [0.25, -1.0])
def test_focal_sampler_times_bce_is_torchvision_focal_value_and_gradient(alpha):
    torch.manual_seed(0)
    logits = torch.randn(20, 4, requires_grad=True)
    targets = (torch.rand(20, 4) > 0.8).float()
    labels = torch.zeros(20, dtype=torch.int64)
    w = FocalSampler(alpha=alpha, gamma=2.0).reweight(logits, targets, labels, ctx(20))
    ours = BinaryCrossEntropyLoss()(logits, targets, w, 3)
    (g_ours,) = torch.autograd.grad(ours, logits)
    theirs = sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=2.0, reduction="sum") / 3
    (g_theirs,) = torch.autograd.grad(theirs, logits)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)
    assert torch.allclose(g_ours, g_theirs, atol=1e-7)


def test_softmax_focal_by_hand():
    # two classes, logits (0, 0): p_t = 0.5 for both rows; row 0 background (1 - alpha), row 1 foreground (alpha)
    logits = torch.zeros(2, 2, requires_grad=True)
    labels = torch.tensor([0, 1])
    w = FocalSampler(alpha=0.25, gamma=2.0).reweight(logits, labels, labels, ctx(2))
    assert w.tolist() == pytest.approx([0.75 * 0.25, 0.25 * 0.25])
    loss = CrossEntropyLoss()(logits, labels, w, 1)
    assert loss.item() == pytest.approx((0.75 + 0.25) * 0.25 * math.log(2), rel=1e-6)
    assert FocalSampler.normalization is Normalization.POSITIVES and ISRPSampler.normalization is Normalization.KEPT


def test_focal_form_mismatch_is_refused():
    with pytest.raises(ValueError, match="does not fit"):
        FocalSampler(form="sigmoid").reweight(torch.zeros(2, 3), torch.tensor([0, 1]), torch.tensor([0, 1]), ctx(2))


def test_focal_keeps_every_non_ignored_candidate():
    (w,) = FocalSampler()([cands([1, 0, -1, 0])])
    assert w.tolist() == [1, 1, 0, 1]


def test_isr_p_by_hand():
    # positives: class 1 -> gt A (pred IoU 0.9, 0.6), gt B (0.8); class 2 -> gt C (0.7); one negative.
    # n_max = 3 (class 1). Local ranks: A 0.9 -> 0, 0.6 -> 1; B 0; C 0. Class-1 scores 0.9+3, 0.6+2, 0.8+3
    # -> HLR 0, 2, 1; class 2 -> 0. u = (3 - HLR) / 3 = 1, 1/3, 2/3, 1; k=2: 1, 1/9, 4/9, 1.
    # Unit losses: rescale by 4 / (1 + 1/9 + 4/9 + 1) = 4 / (23/9) = 36/23.
    labels = torch.tensor([1, 1, 1, 2, 0])
    gt_ids = torch.tensor([0, 0, 1, 2, 0])
    ious = torch.tensor([0.9, 0.6, 0.8, 0.7, 0.0])
    logits = torch.zeros(5, 3)
    w = ISRPSampler(k=2, bias=0).reweight(logits, labels, labels, ctx(5, gt_ids, ious, torch.ones(5)))
    scale = 36 / 23
    assert w.tolist() == pytest.approx([scale, scale / 9, 4 * scale / 9, scale, 1.0], rel=1e-6)
    # bias 0.5, k 1: 0.5 + 0.5 u -> 1, 2/3, 5/6, 1
    w = ISRPSampler(k=1, bias=0.5).reweight(logits, labels, labels,
                                            ctx(5, gt_ids, ious, torch.tensor([2.0, 1.0, 1.0, 1.0, 9.0])))
    raw = torch.tensor([1, 2 / 3, 5 / 6, 1])
    loss = torch.tensor([2.0, 1.0, 1.0, 1.0])
    assert w[:4].tolist() == pytest.approx((raw * loss.sum() / (raw * loss).sum()).tolist(), rel=1e-6)
    assert w[4] == 1.0


def test_isr_p_without_positives_and_base_sampler():
    w = ISRPSampler().reweight(torch.zeros(2, 3), torch.tensor([0, 0]), torch.tensor([0, 0]), ctx(2))
    assert w.tolist() == [1.0, 1.0]
    sampler = ISRPSampler(base={"type": "ohem", "num": 4})
    assert sampler.needs.losses and sampler.needs.geometry
    with pytest.raises(ValueError, match="hard sampler"):
        ISRPSampler(base={"type": "focal"})


def test_delta_iou_equals_iou_of_decoded_boxes():
    from torchvision.models.detection._utils import BoxCoder
    from torchvision.ops import box_iou

    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    anchors = torch.tensor([[10.0, 20.0, 50.0, 40.0], [0.0, 0.0, 8.0, 30.0]])
    pred = torch.tensor([[1.0, -2.0, 0.5, 0.3], [0.0, 3.0, -1.0, 1.0]])
    target = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, -0.5, 0.5]])
    from detimb.samplers.stats import delta_iou

    a = coder.decode_single(pred, anchors)
    b = coder.decode_single(target, anchors)
    want = box_iou(a, b).diagonal()
    assert torch.allclose(delta_iou(pred, target, coder.weights), want, atol=1e-6)
