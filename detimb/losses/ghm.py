"""Gradient harmonizing losses (Li et al., "Gradient Harmonized Single-stage Detector",
AAAI 2019), as mmdetection's ``ghm_loss.py``: each element's loss is divided by the
density of elements whose gradient norm ``g`` falls in the same of ``bins`` equal bins of
[0, 1], so the many easy elements and the few outliers both weigh less.

With ``momentum > 0`` the bin counts are a running average (a buffer, saved in
checkpoints), updated once per training step in the pass with gradients. Both losses
normalise themselves, as mmdetection's do: the head's normaliser is not used, and the
sampler's weights act as a 0/1 validity mask (mmdetection's ``label_weight``).

mmdetection's anchor heads (``AnchorHead.loss_by_feat``: the RPN and RetinaNet) call them
once per pyramid level, on all the images of that level: each call has its own ``tot``,
its own count of non-empty bins, and updates the running counts, levels in order; the
levels are summed. Both losses declare ``reduces_per_level``, so detimb's objective calls
them the same way wherever the head gives its levels (the RPN and RetinaNet). FCOS and SSD
heads flatten their levels in mmdetection too, and there the density is over the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from detimb.losses.buffers import all_reduce_sum, updates_state, world_size
from detimb.losses.classification import CLS_LOSSES, BatchClasses, ClassificationLoss, Form
from detimb.losses.regression import BOX_LOSSES, BoxLoss


class _GradientDensity(torch.nn.Module):
    """The GHM weight ``tot / (n_valid_bins * count(bin(g)))`` of each valid element."""

    def __init__(self, bins: int, momentum: float, last_edge: float) -> None:
        super().__init__()
        if bins < 1 or not 0.0 <= momentum < 1.0:
            raise ValueError(f"GHM needs bins >= 1 and 0 <= momentum < 1, got bins={bins}, momentum={momentum}")
        self.bins, self.momentum = bins, momentum
        edges = torch.arange(bins + 1).float() / bins
        edges[-1] = last_edge
        self.register_buffer("edges", edges, persistent=False)
        self.register_buffer("acc_sum", torch.zeros(bins, dtype=torch.float64))

    def weights(self, g: Tensor, valid: Tensor, update: bool) -> tuple[Tensor, float]:
        """Per-element weights (zeros where not valid or outside the last edge) and the
        divisor of the weighted sum, ``tot``. In the training pass (``update``) the counts and
        ``tot`` are summed over the ranks, so every rank weighs by the whole batch's density
        and keeps the same running counts (mmdetection's run per rank, and DDP's buffer
        broadcast keeps rank 0's); the divisor is then ``tot / world``, so that DDP's average
        of the ranks' gradients is the single-process loss on the union of the batches."""
        index = torch.bucketize(g.float(), self.edges, right=True) - 1  # edges[i] <= g < edges[i + 1]
        inside = valid & (index >= 0) & (index < self.bins)
        counts = torch.bincount(index[inside], minlength=self.bins).to(torch.float64)
        total = valid.sum().to(torch.float64)
        ranks = 1
        if update:
            counts, total = all_reduce_sum(torch.cat([counts, total[None]])).split([self.bins, 1])
            ranks = world_size()
        tot = max(float(total), 1.0)
        nonempty = counts > 0
        n = int(nonempty.sum())
        if n == 0:
            return torch.zeros_like(g), tot / ranks
        if self.momentum > 0:
            acc = torch.where(nonempty, self.momentum * self.acc_sum + (1 - self.momentum) * counts, self.acc_sum)
            if update:
                self.acc_sum.copy_(acc)
            density = torch.where(nonempty, acc, torch.ones_like(acc))
        else:
            density = torch.where(nonempty, counts, torch.ones_like(counts))
        # at least float32: under fp16 autocast tot / density reaches millions on a real batch (inf in fp16)
        dtype = torch.promote_types(g.dtype, torch.float32)
        per_bin = (tot / density / n).to(dtype)
        zero = torch.zeros(g.shape, dtype=dtype, device=g.device)
        return torch.where(inside, per_bin[index.clamp(0, self.bins - 1)], zero), tot / ranks


@CLS_LOSSES.register("ghm_c")
class GHMCLoss(ClassificationLoss):
    """GHM-C: sigmoid cross-entropy harmonised by the density of ``g = |sigmoid(x) - y|``,
    ``sum(w * BCE) / tot`` over the valid elements. Defaults bins=30, momentum=0.75 (the
    values of mmdetection's GHM RetinaNet config; its class defaults are 10 and 0),
    loss_weight 1. In the RPN, RetinaNet, and the RoI head's sigmoid classifier."""

    form = Form.SIGMOID
    reduces_per_level = True

    def __init__(self, bins: int = 30, momentum: float = 0.75, loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight)
        self.density = _GradientDensity(bins, momentum, last_edge=1.0 + 1e-6)

    def _weighted(self, logits: Tensor, targets: Tensor, weight: Tensor | None, update: bool) -> tuple[Tensor, float]:
        targets = targets.to(logits.dtype)
        valid = torch.ones_like(targets, dtype=torch.bool)
        if weight is not None:
            valid = (weight if weight.dim() == logits.dim() else weight.reshape(-1, *([1] * (logits.dim() - 1)))
                     ).expand_as(logits) > 0
        g = (torch.sigmoid(logits.detach()) - targets).abs()
        w, tot = self.density.weights(g, valid, update)
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="none") * w, tot

    def elementwise(self, logits: Tensor, targets: Tensor) -> Tensor:
        return self._weighted(logits, targets, None, update=False)[0]

    def forward(self, logits: Tensor, targets: Tensor, weight: Tensor | None = None,
                avg_factor: float | Tensor | None = None, *, batch: BatchClasses | None = None) -> Tensor:
        loss, tot = self._weighted(logits, targets, weight, update=updates_state(self))
        return self.loss_weight * loss.sum() / tot


@BOX_LOSSES.register("ghm_r")
class GHMRLoss(BoxLoss):
    """GHM-R: the authentic smooth L1 ``ASL1(d) = sqrt(d^2 + mu^2) - mu`` on the encoded
    deltas, harmonised by the density of ``g = |d| / sqrt(d^2 + mu^2)`` over the positives'
    4 coordinates, ``sum(w * ASL1) / tot``. Defaults: mu=0.02, bins=10, momentum=0.7 (the
    values of mmdetection's GHM RetinaNet config, whose loss_weight is 10), loss_weight 1."""

    reduces_per_level = True

    def __init__(self, mu: float = 0.02, bins: int = 10, momentum: float = 0.7, loss_weight: float = 1.0) -> None:
        super().__init__(loss_weight)
        if mu <= 0:
            raise ValueError(f"ghm_r needs mu > 0, got {mu}")
        self.mu = mu
        self.density = _GradientDensity(bins, momentum, last_edge=1e3)

    def per_box(self, pred: Tensor, target: Tensor) -> Tensor:
        """(P,) each box's harmonised loss, already divided by ``tot`` (so ``reduce`` sums)."""
        diff = pred - target
        root = torch.sqrt(diff * diff + self.mu * self.mu)
        g = (diff / root).abs().detach()
        w, tot = self.density.weights(g, torch.ones_like(g, dtype=torch.bool), updates_state(self))
        return ((root - self.mu) * w).sum(-1) / tot

    def reduce(self, per_box: Tensor, weight: Tensor | None = None, avg_factor: float | Tensor | None = None) -> Tensor:
        if weight is not None:
            per_box = per_box * (weight > 0)
        return self.loss_weight * per_box.sum()
