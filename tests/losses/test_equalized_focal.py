"""EFL against a line-by-line restatement of the released loss (``ModelTC/United-Perception``
@52aaeb9, ``up/tasks/det/plugins/efl/models/losses/efl.py``: ``forward`` and
``collect_grad``), over several steps and across a resume."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import sigmoid_focal_loss

from detimb.losses import CLS_LOSSES, EqualizedFocalLoss


class ReleasedEFL:
    """The released forward and gradient collection, restated: ``input`` (N, K) without a
    background column, ``target`` (N,) labels 1..K, 0 background, -1 ignored."""

    def __init__(self, num_classes: int, focal_gamma=2.0, focal_alpha=0.25, scale_factor=8.0) -> None:
        self.num_classes, self.focal_gamma, self.focal_alpha, self.scale_factor = (num_classes, focal_gamma,
                                                                                   focal_alpha, scale_factor)
        self.pos_grad = torch.zeros(num_classes, dtype=torch.float64)
        self.neg_grad = torch.zeros(num_classes, dtype=torch.float64)
        self.pos_neg = torch.ones(num_classes, dtype=torch.float64)

    def forward(self, input, target, normalizer):
        n_i, n_c = input.shape
        expand_target = input.new_zeros(n_i, n_c + 1)
        expand_target[torch.arange(n_i), target] = 1
        expand_target = expand_target[:, 1:]
        sample_mask = target != -1
        inputs, targets = input[sample_mask], expand_target[sample_mask]
        self.cache_mask, self.cache_target = sample_mask, expand_target
        pred = torch.sigmoid(inputs)
        pred_t = pred * targets + (1 - pred) * (1 - targets)
        map_val = 1 - self.pos_neg.detach()
        dy_gamma = self.focal_gamma + self.scale_factor * map_val
        ff = dy_gamma.view(1, -1).expand(n_i, n_c)[sample_mask]
        wf = ff / self.focal_gamma
        ce_loss = -torch.log(pred_t)
        cls_loss = ce_loss * torch.pow((1 - pred_t), ff.detach()) * wf.detach()
        alpha_t = self.focal_alpha * targets + (1 - self.focal_alpha) * (1 - targets)
        return (alpha_t * cls_loss).sum() / normalizer

    def collect_grad(self, grad):
        target = self.cache_target[self.cache_mask]
        grad = torch.abs(grad)[self.cache_mask]
        self.pos_grad += torch.sum(grad * target, dim=0)
        self.neg_grad += torch.sum(grad * (1 - target), dim=0)
        self.pos_neg = torch.clamp(self.pos_grad / (self.neg_grad + 1e-10), min=0, max=1)


K = 5


def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K + 1) logits in torchvision's layout and (N,) labels with background and ignored."""
    g = torch.Generator().manual_seed(step)
    logits = torch.randn(40, K + 1, generator=g, dtype=torch.float64) * 2
    labels = torch.randint(0, K + 1, (40,), generator=g)
    labels[::3] = 0  # many background anchors
    labels[5], labels[11] = -1, -1  # ignored (between the IoU thresholds)
    return logits, labels


def detimb_step(loss: EqualizedFocalLoss, logits: torch.Tensor, labels: torch.Tensor):
    x = logits.clone().requires_grad_(True)
    onehot = torch.zeros_like(x)
    fg = labels > 0
    onehot[torch.where(fg)[0], labels[fg]] = 1
    weight = (labels >= 0).to(x.dtype)
    value = loss(x, onehot, weight, float(fg.sum()))
    value.backward()
    return value, x.grad


def released_step(ref: ReleasedEFL, logits: torch.Tensor, labels: torch.Tensor):
    x = logits[:, 1:].clone().requires_grad_(True)
    normalizer = float((labels > 0).sum())
    value = ref.forward(x, labels, normalizer)
    value.backward()
    ref.collect_grad(x.grad)  # the hook sees d(loss)/d(logits) after backward
    # column 0, torchvision's never-positive column: plain focal loss on its negatives
    kept = labels >= 0
    column0 = sigmoid_focal_loss(logits[kept, :1], torch.zeros_like(logits[kept, :1]), 0.25, 2.0,
                                 reduction="sum") / normalizer
    return value + column0, x.grad


def test_first_step_is_torchvisions_focal_loss():
    loss = EqualizedFocalLoss()
    x = torch.randn(30, K + 1, dtype=torch.float64)
    t = torch.zeros_like(x)
    t[torch.arange(10), torch.randint(1, K + 1, (10,))] = 1
    assert torch.allclose(loss.elementwise(x, t), sigmoid_focal_loss(x, t, 0.25, 2.0, reduction="none"))


def test_loss_gradient_and_statistics_equal_the_released_code_over_steps_and_a_resume():
    ref, loss = ReleasedEFL(K), EqualizedFocalLoss().train()
    resumed = None
    for step in range(6):
        logits, labels = batch(step)
        want, want_grad = released_step(ref, logits, labels)
        got, got_grad = detimb_step(loss, logits, labels)
        assert got.item() == pytest.approx(want.item(), rel=1e-10)
        assert torch.allclose(got_grad[:, 1:], want_grad, rtol=1e-9, atol=1e-12)
        assert torch.allclose(loss.pos_grad, ref.pos_grad, rtol=1e-9)
        assert torch.allclose(loss.neg_grad, ref.neg_grad, rtol=1e-9)
        if resumed is not None:  # a module restored from the step-2 checkpoint continues identically
            again, again_grad = detimb_step(resumed, logits, labels)
            assert again.item() == got.item() and torch.equal(again_grad, got_grad)
        if step == 2:
            resumed = EqualizedFocalLoss().train()
            resumed.load_state_dict(loss.state_dict())
    gamma = loss.focusing_factors(K + 1, torch.zeros(1, dtype=torch.float64))
    ratio = (ref.pos_grad / (ref.neg_grad + 1e-10)).clamp(0, 1)
    assert torch.allclose(gamma[1:], 2.0 + 8.0 * (1 - ratio)) and gamma[0] == 2.0
    assert (gamma[1:] > 2.0).all()  # the classes' gradients are unbalanced after six steps


def test_statistics_move_only_in_training_with_gradients():
    loss = EqualizedFocalLoss()
    logits, labels = batch(0)
    onehot = torch.zeros_like(logits)
    onehot[torch.where(labels > 0)[0], labels[labels > 0]] = 1
    loss.eval()(logits, onehot)
    assert loss.pos_grad.numel() == 0
    with torch.no_grad():
        loss.train()(logits, onehot)
    assert loss.pos_grad.numel() == 0


def test_a_classifier_of_another_width_is_named():
    loss = EqualizedFocalLoss().train()
    logits, labels = batch(0)
    detimb_step(loss, logits, labels)
    with pytest.raises(ValueError, match="7 outputs but the loss.s statistics hold 5"):
        loss(torch.zeros(3, K + 2, dtype=torch.float64), torch.zeros(3, K + 2, dtype=torch.float64))


@pytest.mark.parametrize("spec,match", [({"gamma_b": 0.0}, "gamma_b > 0"), ({"scale_factor": -1.0}, "scale_factor"),
                                        ({"alpha": 1.5}, "alpha <= 1")])
def test_bad_settings_are_named(spec, match):
    with pytest.raises(ValueError, match=match):
        CLS_LOSSES.build({"type": "efl", **spec}, "model.retina_head.loss_cls")
