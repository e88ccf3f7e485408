"""What a head hands its objective: the batch's candidates after matching (``Targets``,
with their pyramid levels where the head has them), its predictions for them
(``Predictions``), and the dense heads' flattening of both (``dense_batch``)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from detimb.models.heads.matching import Matches


@dataclass
class Mixup:
    """Mixed targets of a dense head: each candidate's loss is ``mix * L(labels_a) +
    (1 - mix) * L(labels_b)``. labels_a, labels_b: (N,) int64 (-1 ignored); mix: (N,) float."""

    labels_a: Tensor
    labels_b: Tensor
    mix: Tensor

    def select(self, index: Tensor) -> Mixup:
        return Mixup(self.labels_a[index], self.labels_b[index], self.mix[index])


@dataclass
class Targets:
    """A batch's candidates after matching, concatenated image after image.

    labels: (N,) int64 as in ``Matches`` (what the sampler sees; with mixup the label of
        the larger share). ious: (N,) float. gt_index: (N,) int64, within its image.
    image: (N,) int64, the image each candidate belongs to; num_images: the batch size.
    boxes: (N, 4) the candidates' own boxes (anchors, proposals), or None for pixels.
    gt_boxes: (N, 4) the matched ground-truth boxes (zeros where none), or None.
    mixup: mixed targets of a dense head, or None.
    negative_classes: (M,) int64 labels verified absent from some image of the batch
        (LVIS's ``neg_category_ids``), or None when the data has none.
    not_exhaustive: (num_images, K + 1) bool, the labels each image does not annotate
        exhaustively (LVIS's ``not_exhaustive_category_ids``), or None.
    level: (N,) int64 the pyramid level of each candidate (0 = the finest), or None when
        the head does not say; num_levels: how many levels ``level`` counts.
    """

    labels: Tensor
    ious: Tensor
    gt_index: Tensor
    image: Tensor
    num_images: int
    boxes: Tensor | None = None
    gt_boxes: Tensor | None = None
    mixup: Mixup | None = None
    negative_classes: Tensor | None = None
    not_exhaustive: Tensor | None = None
    level: Tensor | None = None
    num_levels: int = 0

    @classmethod
    def from_matches(cls, matches: list[Matches], boxes: list[Tensor], gt_boxes: list[Tensor],
                     negative_classes: Tensor | None = None, not_exhaustive: Tensor | None = None,
                     anchors_per_level: list[int] | None = None) -> Targets:
        """One image's matches, candidate boxes (N_i, 4) and ground-truth boxes (G_i, 4)
        each, the batch's LVIS labels (see the fields), and for anchor heads the number of
        anchors of each pyramid level in every image (levels concatenated, finest first)."""
        device = boxes[0].device
        level = None
        if anchors_per_level is not None:
            counts = torch.tensor(anchors_per_level, device=device)
            one = torch.repeat_interleave(torch.arange(len(anchors_per_level), device=device), counts,
                                          output_size=sum(anchors_per_level))
            level = one.repeat(len(matches))
        # the ground truth keeps its own dtype (float32), not the anchors' (float16 under autocast), as torchvision's
        matched = [g[m.gt_index] if g.numel() else g.new_zeros(b.shape) for g, m, b in zip(gt_boxes, matches, boxes)]
        image = torch.cat([torch.full((len(m.labels),), i, dtype=torch.int64, device=device)
                           for i, m in enumerate(matches)])
        return cls(torch.cat([m.labels for m in matches]), torch.cat([m.ious for m in matches]),
                   torch.cat([m.gt_index for m in matches]), image, len(matches), torch.cat(boxes),
                   torch.cat(matched), negative_classes=negative_classes,
                   not_exhaustive=not_exhaustive, level=level,
                   num_levels=0 if anchors_per_level is None else len(anchors_per_level))

    def select(self, index: Tensor) -> Targets:
        pick = lambda t: None if t is None else t[index]  # noqa: E731
        return replace(self, labels=self.labels[index], ious=self.ious[index], gt_index=self.gt_index[index],
                       image=self.image[index], boxes=pick(self.boxes), gt_boxes=pick(self.gt_boxes),
                       mixup=None if self.mixup is None else self.mixup.select(index), level=pick(self.level))

    def sizes(self) -> list[int]:
        """The number of candidates of each image."""
        return torch.bincount(self.image, minlength=self.num_images).tolist()

    def gt_ids(self) -> Tensor:
        """Ground-truth indices made unique across the batch (image i's j -> i * 2^20 + j)."""
        return self.gt_index + (self.image << 20)


@dataclass
class Predictions:
    """What a head predicts for the same N candidates as its ``Targets``.

    cls_logits: (N, C) class logits (softmax over background + K, or per-class sigmoid),
        or (N,) for a single sigmoid output (the RPN's objectness).
    deltas: (N, 4) encoded box deltas, or (N, C, 4) one set per class (the RoI head: the
        candidate's label picks its row); None for a head without boxes.
    """

    cls_logits: Tensor
    deltas: Tensor | None = None

    def detach(self) -> Predictions:
        return Predictions(self.cls_logits.detach(), None if self.deltas is None else self.deltas.detach())

    def at_least_float32(self) -> Predictions:
        """The same predictions as float32 where they are a narrower float (autocast's)."""
        wide = lambda t: t if t.dtype in (torch.float32, torch.float64) else t.float()  # noqa: E731
        return Predictions(wide(self.cls_logits), None if self.deltas is None else wide(self.deltas))


def dense_batch(matches: list[Matches], anchors: list[Tensor], targets: list[dict[str, Tensor]],
                head_outputs: dict[str, Tensor], anchors_per_level: list[int] | None = None
                ) -> tuple[Targets, Predictions]:
    """A dense head's (RetinaNet, FCOS, SSD) batch for its objective: each image's matches
    over its anchors (A_i, 4), and the head's ``cls_logits`` (B, A, C) and
    ``bbox_regression`` (B, A, 4) flattened over the batch; ``anchors_per_level`` where
    the released head reduces level by level (see ``Targets.from_matches``)."""
    batch = Targets.from_matches(matches, anchors, [t["boxes"] for t in targets],
                                 anchors_per_level=anchors_per_level)
    return batch, Predictions(head_outputs["cls_logits"].flatten(0, 1), head_outputs["bbox_regression"].flatten(0, 1))


def level_groups(level: Tensor | None, num_levels: int, per_level: bool) -> list[Tensor | None]:
    """The candidates of each pyramid level in level order, where the loss reduces per
    level and the head gave levels; otherwise ``[None]``: all candidates in one call."""
    if not per_level or level is None:
        return [None]
    return [torch.where(level == i)[0] for i in range(num_levels)]
