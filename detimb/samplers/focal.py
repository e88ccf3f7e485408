"""The focal loss as a soft sampler."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from detimb.samplers.base import SAMPLERS, Normalization, ReweightContext, SoftSampler


@SAMPLERS.register("focal")
class FocalSampler(SoftSampler):
    """Focal loss as soft sampling (Lin et al., ICCV 2017): every candidate is kept and its
    cross-entropy is weighted by ``alpha_t * (1 - p_t)^gamma``, computed from the current
    logits without detaching, so ``weight * BCE`` is exactly ``torchvision.ops.
    sigmoid_focal_loss`` in value and gradient. Pair it with a plain loss
    (``binary_cross_entropy`` / ``cross_entropy``), never with ``sigmoid_focal``.

    ``form='sigmoid'``: per class (RetinaNet, the RPN's objectness); ``alpha_t`` is alpha
    for targets 1, 1 - alpha for targets 0. ``form='softmax'`` (the RoI head): ``p_t`` is
    the softmax probability of the true class; ``alpha_t`` is alpha for foreground, 1 -
    alpha for background. ``alpha < 0`` disables alpha.

    Both terms are divided by the number of positives (``Normalization.POSITIVES``), as
    RetinaNet does. ``prior`` is the foreground probability the head's classifier bias
    starts from (RetinaNet's 0.01): the RPN's objectness bias ``-log((1 - p) / p)``, the
    RoI head's softmax biases ``log(1 - p)`` for background and ``log(p / K)`` for each
    class; RetinaNet's head keeps its own ``prior_probability``. ``prior: null`` leaves
    the bias as built. A head's explicit ``init_prior`` wins over it.
    Defaults: alpha=0.25, gamma=2.0, form chosen by the head ('auto'), prior=0.01.
    """

    normalization = Normalization.POSITIVES

    def __init__(self, alpha: float = 0.25, gamma: float = 2.0, form: str = "auto",
                 prior: float | None = 0.01) -> None:
        if form not in ("auto", "sigmoid", "softmax"):
            raise ValueError(f"form must be 'auto', 'sigmoid' or 'softmax', got {form!r}")
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0, got {gamma}")
        if prior is not None and not 0.0 < prior < 1.0:
            raise ValueError(f"prior must be in (0, 1) or null, got {prior}")
        self.alpha, self.gamma, self.form = alpha, gamma, form
        self.classifier_prior = prior

    def reweight(self, logits: Tensor, targets: Tensor, labels: Tensor, context: ReweightContext) -> Tensor:
        softmax = targets.dtype == torch.int64
        if self.form != "auto" and (self.form == "softmax") != softmax:
            raise ValueError(f"focal form '{self.form}' does not fit this head's "
                             f"{'softmax' if softmax else 'sigmoid'} classifier")
        if softmax:
            p_t = F.softmax(logits, dim=-1).gather(1, targets[:, None]).squeeze(1)
            positive = (targets > 0).to(logits.dtype)
        else:
            p = torch.sigmoid(logits)
            positive = targets.to(logits.dtype)
            p_t = p * positive + (1 - p) * (1 - positive)
        weight = (1 - p_t) ** self.gamma
        if self.alpha >= 0:
            weight = weight * (self.alpha * positive + (1 - self.alpha) * (1 - positive))
        return weight
