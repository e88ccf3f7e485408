"""The one training objective every detimb head calls: sampler -> losses -> balancer.

A head matches its candidates to ground truth (``matching.match_to_ground_truth``),
produces logits and box deltas, and hands both to its ``HeadObjective``, built once by
the builder from the head's config slots. The objective

1. scores every candidate without gradient under the head's own configured losses, when
   the sampler ranks by loss (``sampler.needs.losses``; OHEM, hard pixel mining);
2. calls the sampler, one ``Candidates`` per image;
3. reweighs the kept candidates for soft samplers (focal, ISR-P), multiplying their weights;
4. divides both terms by the sampler's normaliser (``Normalization``: kept candidates or
   positives), over the batch or image by image (``Averaging``);
5. reduces the classification and box losses (``detimb.losses.reduce``);
6. applies the balancer (fixed weights, CARL, guided loss);
7. records what was kept and how the terms were balanced (``stats``, for the log).

A new sampler, loss or balancer plugs in here once and works in every head.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torchvision.models.detection._utils import BoxCoder

from detimb.losses import BalanceContext, BoxLoss, ClassificationLoss, Form
from detimb.losses.classification import BatchClasses, Columns
from detimb.losses.balancers import Balancer
from detimb.losses.regression import elementwise_iou
from detimb.models.heads.batch import Predictions, Targets, level_groups
from detimb.models.heads.coders import LinearBoxCoder
from detimb.samplers import Candidates, Normalization, ReweightContext, Sampler, SoftSampler
from detimb.samplers.stats import delta_iou, sampling_stats


class Averaging(enum.Enum):
    """How a head combines its images: ``BATCH``, one normaliser over the whole batch
    (torchvision's RPN and RoI heads); ``IMAGE``, each image divided by its own count and
    the images then averaged (torchvision's RetinaNet)."""

    BATCH = "batch"
    IMAGE = "image"


class Layout(enum.Enum):
    """Where a head's sigmoid classifier puts its classes: ``TORCHVISION``, column = label
    with column 0 never positive (RetinaNet), or one objectness logit (the RPN);
    ``ROI``, the RoI head's layout as the loss's ``columns`` says (K foreground columns,
    or K + 1 with a background column whose target is 1 on background). Softmax heads
    take class indices either way."""

    TORCHVISION = "torchvision"
    ROI = "roi"


@dataclass(frozen=True)
class TermNames:
    """The names of a head's loss terms (torchvision's): ``box`` is None for a head
    without boxes (the dense head)."""

    cls: str
    box: str | None


@dataclass
class BoxPairs:
    """The P positives' box terms: deltas (P, 4) predicted for their own class, goal_deltas
    (P, 4) encoded from the matched ground truth, and loss_pred / loss_goal what the box
    loss compares (the deltas, or decoded boxes and ground truth for IoU-family losses)."""

    deltas: Tensor
    goal_deltas: Tensor
    loss_pred: Tensor
    loss_goal: Tensor


class HeadObjective(nn.Module):
    """Sampler, classification loss, box loss and balancer of one head (see the module docstring).

    Args:
        sampler: from ``detimb.samplers``. loss_cls: a ``ClassificationLoss`` of the
        head's classifier form. loss_bbox: a ``BoxLoss`` (None for the dense head).
        box_coder: the head's coder (decodes predicted deltas for IoU-family losses and
        encodes the regression targets). terms: the head's term names. averaging:
        ``Averaging.BATCH`` or ``IMAGE``. balancer: optional, from ``detimb.losses``.
        layout: the sigmoid classifier's columns (``Layout``). num_classes: K + 1 of a
        multi-class head (for the log's per-class shares), None for the RPN.
    """

    def __init__(self, sampler: Sampler, loss_cls: ClassificationLoss, loss_bbox: BoxLoss | None,
                 box_coder: BoxCoder | LinearBoxCoder | None, terms: TermNames, averaging: Averaging = Averaging.BATCH,
                 balancer: Balancer | None = None, layout: Layout = Layout.TORCHVISION,
                 num_classes: int | None = None) -> None:
        super().__init__()
        if (loss_bbox is None) != (terms.box is None) or (loss_bbox is not None and box_coder is None):
            raise ValueError("a head with a box term needs loss_bbox, box_coder and a box term name")
        self.sampler, self.loss_cls, self.loss_bbox, self.box_coder = sampler, loss_cls, loss_bbox, box_coder
        self.terms, self.averaging, self.balancer, self.layout = terms, averaging, balancer, layout
        self.num_classes = num_classes
        self.stats: dict[str, Tensor] = {}

    # -- the parts -----------------------------------------------------------------------

    def cls_targets(self, logits: Tensor, labels: Tensor) -> Tensor:
        """The classification loss's targets: (N,) classes for softmax, (N,) or one-hot
        (N, C) floats for sigmoid laid out as ``layout`` says."""
        labels = labels.clamp(min=0)
        if self.loss_cls.form is Form.SOFTMAX:
            return labels
        if logits.dim() == 1:
            return (labels > 0).to(logits.dtype)
        onehot = torch.zeros_like(logits)
        positive = torch.where(labels > 0)[0]
        if self.layout is Layout.ROI and self.loss_cls.columns is Columns.FOREGROUND:
            onehot[positive, labels[positive] - 1] = 1.0
            return onehot
        onehot[positive, labels[positive]] = 1.0
        if self.layout is Layout.ROI:  # the background column's target: 1 on background
            onehot[labels == 0, 0] = 1.0
        return onehot

    def foreground_scores(self, targets: Targets, predictions: Predictions) -> tuple[Tensor, Tensor]:
        """(N, K) the RoI head's inference scores and (N, 4) each candidate's predicted box for
        its highest-scoring class, for samplers that read predictions (ISR-N)."""
        if self.box_coder is None or predictions.deltas is None or predictions.deltas.dim() != 3 \
                or targets.boxes is None:
            raise ValueError(f"{type(self.sampler).__name__} reads per-class scores and boxes: RoI head only")
        scores = self.loss_cls.roi_scores(predictions.cls_logits)
        best = scores.argmax(1) + 1
        deltas = predictions.deltas[torch.arange(len(best), device=best.device), best]
        return scores, self.box_coder.decode_single(deltas, targets.boxes)

    def box_pairs(self, targets: Targets, deltas: Tensor, positive: Tensor) -> BoxPairs:
        """The positives' predicted and target deltas, and what the box loss compares:
        the deltas, or for IoU-family losses the decoded boxes and the matched ground truth."""
        assert self.box_coder is not None and self.loss_bbox is not None
        assert targets.boxes is not None and targets.gt_boxes is not None
        pred = deltas[positive]
        if pred.dim() == 3:  # one set per class: the candidate's own class
            pred = pred[torch.arange(len(positive), device=pred.device), targets.labels[positive]]
        anchors, gt = targets.boxes[positive], targets.gt_boxes[positive]
        goal = self.box_coder.encode_single(gt, anchors)
        if self.loss_bbox.needs_boxes:  # decoded in at least float32: fp16 areas overflow above 65504 px^2
            wide = pred.to(torch.promote_types(pred.dtype, torch.float32))
            return BoxPairs(pred, goal, self.box_coder.decode_single(wide, anchors), gt)
        return BoxPairs(pred, goal, pred, goal)

    def _cls_elementwise_targets(self, targets: Targets, logits: Tensor) -> list[tuple[Tensor, Tensor | None]]:
        """(targets, share) pairs of the classification loss: one pair, or two under mixup."""
        if targets.mixup is None:
            return [(self.cls_targets(logits, targets.labels), None)]
        m = targets.mixup
        return [(self.cls_targets(logits, m.labels_a), m.mix), (self.cls_targets(logits, m.labels_b), 1 - m.mix)]

    @torch.no_grad()
    def candidate_losses(self, targets: Targets, predictions: Predictions) -> Tensor:
        """(N,) each candidate's loss under the configured losses, without gradient: the
        classification loss, plus the positives' box loss when the sampler asks."""
        logits = predictions.cls_logits
        score = sum(self.loss_cls.candidate_loss(logits, goal) * (1 if share is None else share)
                    for goal, share in self._cls_elementwise_targets(targets, logits))
        assert isinstance(score, Tensor)
        if self.sampler.needs.box_losses and self.loss_bbox is not None and predictions.deltas is not None:
            positive = torch.where(targets.labels > 0)[0]
            pairs = self.box_pairs(targets, predictions.deltas, positive)
            score = score.index_add(0, positive, self.loss_bbox.loss_weight * self.loss_bbox.per_box(pairs.loss_pred,
                                                                                                     pairs.loss_goal))
        return score

    def sample(self, targets: Targets, score: Callable[[], Predictions] | None = None) -> Tensor:
        """(N,) the sampler's weight of each candidate (0 for dropped and ignored ones).
        ``score`` returns the current predictions of all N candidates; it is called only
        when the sampler ranks by loss."""
        none: list[Tensor | None] = [None] * targets.num_images
        losses, scores, boxes = none, none, none
        sizes = targets.sizes()
        needs = self.sampler.needs
        if needs.losses or needs.predictions:
            if score is None:
                raise ValueError(f"{type(self.sampler).__name__} reads the predictions; this head must pass them")
            predictions = score()
            if needs.losses:
                losses = list(self.candidate_losses(targets, predictions).split(sizes))
            if needs.predictions:
                with torch.no_grad():
                    all_scores, all_boxes = self.foreground_scores(targets, predictions)
                scores, boxes = list(all_scores.split(sizes)), list(all_boxes.split(sizes))
        per_image = zip(targets.labels.split(sizes), targets.ious.split(sizes), targets.gt_index.split(sizes), losses,
                        scores, boxes)
        weights = torch.cat(self.sampler([Candidates(*parts) for parts in per_image]))
        return weights.to(targets.ious.dtype) * (targets.labels >= 0)

    def _scale(self, targets: Targets) -> tuple[Tensor | None, float]:
        """Per-candidate factor and the avg_factor that implement the sampler's normaliser."""
        counted = targets.labels > 0 if self.sampler.normalization is Normalization.POSITIVES else targets.labels >= 0
        if self.averaging is Averaging.BATCH:
            return None, float(max(1, int(counted.sum())))
        per_image = torch.bincount(targets.image[counted], minlength=targets.num_images).clamp(min=1)
        return 1.0 / per_image[targets.image].to(targets.ious.dtype), float(max(1, targets.num_images))

    # -- the objective -------------------------------------------------------------------

    def forward(self, targets: Targets, predictions: Predictions, weights: Tensor | None = None) -> dict[str, Tensor]:
        """The head's loss terms. ``weights``: the sampler's weights of these candidates
        when the head has sampled already (the RoI head pools only the kept proposals);
        None samples here, from ``predictions`` without gradient. Under autocast the losses
        are computed on float32 logits and deltas (bf16's 8-bit mantissa gives the sigmoid
        focal loss non-finite gradients; fp16's range is worse)."""
        predictions = predictions.at_least_float32()
        if weights is None:
            weights = self.sample(targets, predictions.detach)
            keep = torch.where(weights > 0)[0]
            targets, weights = targets.select(keep), weights[keep]
            predictions = Predictions(predictions.cls_logits[keep],
                                      None if predictions.deltas is None else predictions.deltas[keep])
        logits, labels = predictions.cls_logits, targets.labels
        positive = torch.where(labels > 0)[0]
        scale, avg_factor = self._scale(targets)
        if scale is not None:
            weights = weights * scale
        pairs = None
        if self.loss_bbox is not None and predictions.deltas is not None:
            pairs = self.box_pairs(targets, predictions.deltas, positive)
        cls_weight = weights
        if isinstance(self.sampler, SoftSampler):
            cls_weight = times(cls_weight, self._reweight(self.sampler, targets, logits, positive, pairs))
        batch = None
        if targets.negative_classes is not None and targets.not_exhaustive is not None:
            batch = BatchClasses(targets.negative_classes, targets.not_exhaustive[targets.image])
        losses = {self.terms.cls: self._classification(targets, logits, cls_weight, avg_factor, batch)}
        context = None
        if self.loss_bbox is not None and self.terms.box is not None and pairs is not None:
            per_box = self._per_box(targets, positive, pairs)
            losses[self.terms.box] = self.loss_bbox.reduce(per_box, weights[positive], avg_factor)
            context = BalanceContext(cls_logits=logits, labels=labels, positive=positive,
                                     box_loss=self.loss_bbox.loss_weight * per_box * weights[positive],
                                     avg_factor=avg_factor, form=self.loss_cls.form, cls_term=self.terms.cls,
                                     reg_term=self.terms.box)
        self.stats = self._record(targets)
        if self.balancer is not None and context is not None:
            raw = {f"raw/{k}": v.detach() for k, v in losses.items()}
            losses = self.balancer(losses, context)
            self.stats.update({**raw, **self.balancer.balance_stats})
        return losses  # type: ignore[return-value]

    def _classification(self, targets: Targets, logits: Tensor, weight: Tensor, avg_factor: float,
                        batch: BatchClasses | None) -> Tensor:
        """The classification term: one call of the loss, or one per pyramid level summed
        where the loss ``reduces_per_level`` (two under mixup)."""
        parts = []
        for goal, share in self._cls_elementwise_targets(targets, logits):
            w = weight if share is None else times(weight, share)
            for index in level_groups(targets.level, targets.num_levels, self.loss_cls.reduces_per_level):
                if index is None:
                    parts.append(self.loss_cls(logits, goal, w, avg_factor, batch=batch))
                else:
                    parts.append(self.loss_cls(logits[index], goal[index], w[index], avg_factor,
                                               batch=None if batch is None else batch.select(index)))
        total = sum(parts)
        assert isinstance(total, Tensor)
        return total

    def _per_box(self, targets: Targets, positive: Tensor, pairs: BoxPairs) -> Tensor:
        """(P,) the positives' box losses: one call, or one per pyramid level where the loss
        ``reduces_per_level`` (each level's statistics its own)."""
        assert self.loss_bbox is not None
        level = None if targets.level is None else targets.level[positive]
        groups = level_groups(level, targets.num_levels, self.loss_bbox.reduces_per_level)
        levels = [g for g in groups if g is not None]
        if not levels:
            return self.loss_bbox.per_box(pairs.loss_pred, pairs.loss_goal)
        order = torch.cat(levels)
        values = torch.cat([self.loss_bbox.per_box(pairs.loss_pred[g], pairs.loss_goal[g]) for g in levels])
        return values[torch.argsort(order)]

    def _reweight(self, sampler: SoftSampler, targets: Targets, logits: Tensor, positive: Tensor,
                  pairs: BoxPairs | None) -> Tensor:
        cls_goal = self._cls_elementwise_targets(targets, logits)[0][0]
        with torch.no_grad():
            pred_ious = torch.zeros(len(targets.labels), dtype=logits.dtype, device=logits.device)
            if pairs is not None and isinstance(self.box_coder, BoxCoder):
                pred_ious[positive] = delta_iou(pairs.deltas.detach(), pairs.goal_deltas,
                                                self.box_coder.weights).to(logits.dtype)
            elif pairs is not None and self.box_coder is not None and targets.boxes is not None:  # FCOS's coder
                assert targets.gt_boxes is not None
                decoded = self.box_coder.decode_single(pairs.deltas.detach(), targets.boxes[positive])
                pred_ious[positive] = elementwise_iou(decoded, targets.gt_boxes[positive]).to(logits.dtype)
            context = ReweightContext(targets.gt_ids(), pred_ious, self.loss_cls.elementwise(logits.detach(), cls_goal))
        return sampler.reweight(logits, cls_goal, targets.labels, context)

    @torch.no_grad()
    def _record(self, targets: Targets) -> dict[str, Tensor]:
        num_classes = None if self.num_classes is None else self.num_classes - 1
        stats = sampling_stats(targets.labels, targets.ious, targets.num_images, num_classes)
        if targets.boxes is None:
            del stats["neg_mean_iou"]  # pixels have no IoU
        return stats


def times(a: Tensor, b: Tensor) -> Tensor:
    """The product of two weights of the same N candidates, each (N,) per candidate or
    (N, C) per loss element: a per-candidate weight applies to every element."""
    if a.dim() == 1 and b.dim() == 2:
        return a[:, None] * b
    if a.dim() == 2 and b.dim() == 1:
        return a * b[:, None]
    return a * b
