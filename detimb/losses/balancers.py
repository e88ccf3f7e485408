"""Objective balancers: how a head's classification and regression terms are weighed.

``balancer(losses, context) -> losses``: ``losses`` maps the head's term names to scalars;
``context`` carries what a balancer may need from the head (see ``BalanceContext``). A
balancer may reweigh terms or add its own. Balancers are modules so any state they keep
(the guided loss's frozen ratio) is saved in checkpoints. ``balance_stats`` holds values
of the last step for the training log (the heads add the raw, unbalanced terms).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from detimb.losses.classification import Form
from detimb.registry import Registry

BALANCERS = Registry("balancer")


@dataclass(kw_only=True)
class BalanceContext:
    """What a head's objective hands its balancer.

    cls_logits: (N, C) or (N,) logits of the kept candidates; labels: (N,) (>= 1
    foreground class); positive: indices of the positives in those N; box_loss: (P,) the
    positives' unreduced box loss (with its loss_weight and sampler weight, graph kept);
    avg_factor: the box term's normaliser; form: the classifier's form; cls_term and
    reg_term: the names of the head's two terms."""

    cls_logits: Tensor
    labels: Tensor
    positive: Tensor
    box_loss: Tensor
    avg_factor: float
    form: Form
    cls_term: str
    reg_term: str


class Balancer(nn.Module):
    """Base: ``adds_terms`` is True for balancers that add a loss term (not allowed in the
    RPN, whose torchvision forward expects exactly two)."""

    adds_terms: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.balance_stats: dict[str, Tensor] = {}


@BALANCERS.register("fixed")
class FixedWeights(Balancer):
    """Per-term multipliers, e.g. ``{loss_classifier: 1.0, loss_box_reg: 2.0}``; terms not
    named keep weight 1. Default: no change."""

    def __init__(self, weights: dict[str, float] | None = None) -> None:
        super().__init__()
        self.weights = dict(weights or {})

    def forward(self, losses: dict[str, Tensor], context: BalanceContext | None = None) -> dict[str, Tensor]:
        unknown = set(self.weights) - set(losses)
        if unknown:
            raise KeyError(f"fixed balancer names terms {sorted(unknown)} the head does not produce;"
                           f" its terms are {sorted(losses)}")
        return {k: v * self.weights.get(k, 1.0) for k, v in losses.items()}


@BALANCERS.register("carl")
class CARL(Balancer):
    """Classification-aware regression loss (Cao et al., PISA, CVPR 2020), as mmdetection's
    ``carl_loss``: an extra term ``loss_carl = loss_weight * sum_i w_i L_reg_i / avg_factor``
    over the positives, with s_i the score of the ground-truth class (softmax or sigmoid,
    not detached), ``w_i = (bias + (1 - bias) s_i)^k`` rescaled (not detached) so that
    sum w = number of positives. Gradient flows from the box loss into the positives'
    class scores. No positives: a zero that keeps the graph. Defaults: k=1, bias=0.2,
    loss_weight=1."""

    adds_terms = True

    def __init__(self, k: float = 1.0, bias: float = 0.2, loss_weight: float = 1.0) -> None:
        super().__init__()
        if not 0.0 <= bias <= 1.0:
            raise ValueError(f"carl bias must be in [0, 1], got {bias}")
        self.k, self.bias, self.loss_weight = k, bias, loss_weight

    def forward(self, losses: dict[str, Tensor], context: BalanceContext) -> dict[str, Tensor]:
        pos = context.positive
        if pos.numel() == 0:
            return {**losses, "loss_carl": context.cls_logits.sum() * 0.0}
        labels = context.labels[pos]
        logits = context.cls_logits[pos]
        if context.form is Form.SIGMOID:
            scores = (logits.sigmoid() if logits.dim() == 1 else logits.sigmoid()[torch.arange(len(pos)), labels])
        else:
            scores = F.softmax(logits, dim=-1)[torch.arange(len(pos)), labels]
        w = (self.bias + (1 - self.bias) * scores) ** self.k
        w = w * pos.numel() / w.sum()
        return {**losses, "loss_carl": self.loss_weight * (w * context.box_loss).sum() / context.avg_factor}


@BALANCERS.register("guided")
class GuidedLoss(Balancer):
    """Guided loss (Chen et al., "Is Heuristic Sampling Necessary in Training Deep Object
    Detectors?", TIP 2021; released code ``ChenJoya/sampling-free``,
    ``maskrcnn_benchmark/modeling/sampling_free.py``, ``guided_loss_scaling``): the
    classification term is scaled by ``r = L_reg / L_cls``, computed without gradient, so
    both terms have the same magnitude, then multiplied by ``cls_multiplier`` (the
    released RoI box head doubles it, ``box_head/loss.py``; its RPN and RetinaNet do not).

    ``mode='per_iter'`` (the default, and what the released code at commit 5f133dc does
    in all three heads): r from each iteration. ``mode='frozen'``: r averaged over the
    first ``warmup_iters`` iterations (and across ranks), then fixed; during warm-up each
    iteration uses its own r. The released code has no frozen mode; it is detimb's
    variant of the paper's remark that the ratio settles early, kept for comparison.
    Pair it with sampler ``all``, plain BCE/CE and a prior-initialised classification
    bias (``init_prior`` or ``optimal_prior``). Defaults: mode='per_iter',
    warmup_iters=100, cls_multiplier=1."""

    def __init__(self, mode: str = "per_iter", warmup_iters: int = 100, cls_multiplier: float = 1.0) -> None:
        super().__init__()
        if mode not in ("per_iter", "frozen"):
            raise ValueError(f"guided mode must be 'per_iter' or 'frozen', got {mode!r}")
        if cls_multiplier <= 0:
            raise ValueError(f"guided cls_multiplier must be > 0, got {cls_multiplier}")
        self.mode, self.warmup_iters, self.cls_multiplier = mode, warmup_iters, cls_multiplier
        self.register_buffer("ratio_sum", torch.zeros((), dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.int64))

    def forward(self, losses: dict[str, Tensor], context: BalanceContext) -> dict[str, Tensor]:
        cls, reg = losses[context.cls_term], losses[context.reg_term]
        with torch.no_grad():
            ratio = (reg / cls).detach() if cls > 0 else torch.ones_like(cls)
            if self.mode == "frozen":
                if int(self.count) < self.warmup_iters:
                    shared = ratio.double().clone()
                    if dist.is_available() and dist.is_initialized():
                        dist.all_reduce(shared)
                        shared /= dist.get_world_size()
                    self.ratio_sum += shared
                    self.count += 1
                    ratio = shared.to(ratio.dtype)
                else:
                    ratio = (self.ratio_sum / self.count).to(ratio.dtype)
        self.balance_stats = {"guided_ratio": ratio}
        return {**losses, context.cls_term: cls * ratio * self.cls_multiplier}


def init_classification_prior(bias: Tensor, prior: float, softmax: bool) -> None:
    """Set a classifier's bias so that, before training, foreground has probability ``prior``:
    sigmoid, every output ``b = -log((1 - p) / p)``; softmax (index 0 background),
    ``b_0 = log(1 - p)`` and ``b_c = log(p / K)`` for the K foreground classes."""
    if not 0.0 < prior < 1.0:
        raise ValueError(f"init_prior must be in (0, 1), got {prior}")
    with torch.no_grad():
        if softmax:
            bias.fill_(torch.log(torch.tensor(prior / (bias.numel() - 1))).item())
            bias[0] = torch.log(torch.tensor(1 - prior)).item()
        else:
            bias.fill_(-torch.log(torch.tensor((1 - prior) / prior)).item())
