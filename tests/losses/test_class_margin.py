"""ECM against a line-by-line restatement of the released loss (``janghyuncho/ECM-Loss``
@a637240, ``mmdet/models/losses/effective_class_margin_loss.py`` ``forward``,
``compute_weight``, ``get_activation``; ``ecm_utils.py`` ``get_detection_weight``), in
float64, over several batches and through a checkpoint."""

from __future__ import annotations

import math

import pytest
import torch

from detimb.losses import CLS_LOSSES, ClassStatistics, EffectiveClassMarginLoss

INSTANCES = (1200, 400, 90, 25, 6)
K = len(INSTANCES)


class ReleasedECM:
    """Released layout: columns 0..K-1 the classes, column K background; labels K = background."""

    def __init__(self, counts, fg_bg_ratio=6.3313) -> None:
        n = torch.tensor(counts, dtype=torch.float64)
        self.sample_n = torch.cat([n, n.sum()[None] * fg_bg_ratio])
        a = (self.sample_n.sum() - self.sample_n) / self.sample_n
        self.detection_cls_weight = (a * ((1 + a) / a).log())[None]

    def compute_weight(self, cls_score):
        b, c = cls_score.shape
        n_pos = self.sample_n
        n_neg = self.sample_n.sum() - self.sample_n
        pos_w = (n_neg.pow(1 / 4) / (n_pos.pow(1 / 4) + n_neg.pow(1 / 4))).pow(-1).log()
        neg_w = (n_pos.pow(1 / 4) / (n_pos.pow(1 / 4) + n_neg.pow(1 / 4))).pow(-1).log()
        return pos_w.view(1, -1).expand(b, c), neg_w.view(1, -1).expand(b, c)

    def forward(self, cls_score, labels):
        b, c = cls_score.shape[0], cls_score.shape[1] - 1
        target = cls_score.new_zeros(b, c + 1)
        target[torch.arange(b), labels] = 1
        pos_w, neg_w = self.compute_weight(cls_score)
        score_exp_pos = (cls_score + pos_w).exp()
        score_exp_neg = (-cls_score + neg_w).exp()
        pred_pos = score_exp_pos / (score_exp_pos + score_exp_neg)
        pred_neg = score_exp_neg / (score_exp_pos + score_exp_neg)
        loss_cls = -(pred_pos.log() * target + pred_neg.log() * (1 - target))
        return (loss_cls * self.detection_cls_weight).sum() / b

    def get_activation(self, cls_score):
        cls_score = cls_score.sigmoid()
        cls_score[:, :K] *= 1 - cls_score[:, K:]
        return cls_score


def to_released(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x[:, 1:], x[:, :1]], 1)


def built() -> EffectiveClassMarginLoss:
    return CLS_LOSSES.build({"type": "ecm"}, "model.roi_head.loss_cls",
                            class_stats=ClassStatistics(INSTANCES, (500, 200, 50, 20, 5), 800))


@pytest.mark.parametrize("seed", range(4))
def test_loss_and_gradient_equal_the_released_code(seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(64, K + 1, generator=g, dtype=torch.float64) * 3
    labels = torch.randint(0, K + 1, (64,), generator=g)  # 0: background
    ref = ReleasedECM(INSTANCES)
    x_ref = to_released(logits).requires_grad_(True)
    want = ref.forward(x_ref, torch.where(labels == 0, K, labels - 1))
    want.backward()
    loss = built()
    x = logits.clone().requires_grad_(True)
    onehot = torch.zeros_like(x)
    onehot[torch.arange(64), labels] = 1  # the RoI layout: background's column 0 is 1 on background
    got = loss(x, onehot, torch.ones(64, dtype=torch.float64), 64.0)
    got.backward()
    assert got.item() == pytest.approx(want.item(), rel=1e-12)
    assert torch.allclose(to_released(x.grad), x_ref.grad, rtol=1e-10, atol=1e-14)
    scores = ref.get_activation(to_released(logits))[:, :K]
    assert torch.allclose(loss.roi_scores(logits), scores)  # inference: a plain sigmoid, no margins


def test_margins_by_hand_for_two_classes():
    """n = (3, 1), fg_bg_ratio 1: background count 4, totals 8; class 1 has n- = 5."""
    loss = CLS_LOSSES.build({"type": "ecm", "fg_bg_ratio": 1.0}, "t", class_stats=ClassStatistics((3, 1), (3, 1), 4))
    r = lambda v: v ** 0.25  # noqa: E731
    want_margin = [math.log((r(n) + r(8 - n)) / r(8 - n)) - math.log((r(n) + r(8 - n)) / r(n)) for n in (4, 3, 1)]
    want_weight = [(8 - n) / n * math.log((1 + (8 - n) / n) / ((8 - n) / n)) for n in (4, 3, 1)]
    assert loss.margin.tolist() == pytest.approx(want_margin, rel=1e-12)
    assert loss.class_weight.tolist() == pytest.approx(want_weight, rel=1e-12)
    assert loss.margin[2] < loss.margin[1] < 0  # the rarer class's positives get the larger margin to beat


def test_a_checkpoint_restores_a_loss_built_without_statistics():
    trained = built()
    bare = CLS_LOSSES.build({"type": "ecm"}, "t")
    bare.load_state_dict(trained.state_dict())
    x = torch.randn(8, K + 1, dtype=torch.float64)
    t = torch.zeros_like(x)
    t[:, 0] = 1
    assert torch.equal(bare(x, t), trained(x, t))
    with pytest.raises(ValueError, match="needs the training set's class statistics"):
        CLS_LOSSES.build({"type": "ecm"}, "t")(x, t)


def test_an_absent_class_counts_as_one_instance():
    loss = CLS_LOSSES.build({"type": "ecm"}, "t", class_stats=ClassStatistics((50, 0), (10, 0), 20))
    one = CLS_LOSSES.build({"type": "ecm"}, "t", class_stats=ClassStatistics((50, 1), (10, 1), 20))
    assert torch.isfinite(loss.margin).all() and torch.equal(loss.margin, one.margin)


def test_a_classifier_of_another_width_is_named():
    with pytest.raises(ValueError, match=r"\(N, 6\) logits expected"):
        built()(torch.zeros(2, 5), torch.zeros(2, 5))
