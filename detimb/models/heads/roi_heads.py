"""RoI heads whose proposal sampler, losses and balancer are injected."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.roi_heads import RoIHeads, maskrcnn_loss, project_masks_on_boxes
from torchvision.ops import box_iou

from detimb.losses.balancers import BalanceContext
from detimb.losses.segmentation import binary_as_two_class
from detimb.models.heads.common import apply_balancer, batch_gt_ids, box_loss_inputs
from detimb.samplers import Candidates, Sampler
from detimb.samplers.stats import delta_iou, sampling_stats


class DetimbRoIHeads(RoIHeads):
    """torchvision's RoIHeads (box branch, optional mask branch) with injected training parts.

    Training: ground-truth boxes join the proposals (``add_gt_as_proposals``), proposals
    are matched to ground truth (IoU >= fg_iou_thresh positive, < bg_iou_thresh negative),
    the sampler weighs them from their labels, IoUs, matched ground truth and, for samplers
    that ask (OHEM), their loss under the current head computed without gradient.
    Proposals of weight 0 are dropped before RoI pooling. Hard samplers:
    ``loss_cls(logits, labels, w, n)`` and ``loss_bbox(deltas_pos, targets_pos, w_pos, n)``
    divided by the number ``n`` of kept proposals, as torchvision's ``fastrcnn_loss``. Soft
    samplers reweigh the classification loss from the logits and set its normaliser.
    ``balancer`` (optional) reweighs the resulting terms. The mask loss is torchvision's
    (per-pixel BCE on the matched class's mask) unless ``loss_mask`` gives a pixel loss of
    ``detimb.losses`` (see ``pixel_mask_loss``).
    ``sampling_stats`` holds what the last training step kept. Inference is torchvision's.
    """

    def __init__(self, box_roi_pool: nn.Module, box_head: nn.Module, box_predictor: nn.Module,
                 fg_iou_thresh: float, bg_iou_thresh: float, bbox_reg_weights: tuple[float, ...],
                 score_thresh: float, nms_thresh: float, detections_per_img: int, sampler: Sampler,
                 loss_cls: nn.Module, loss_bbox: nn.Module,
                 balancer: nn.Module | None = None,
                 add_gt_as_proposals: bool = True, mask_roi_pool: nn.Module | None = None,
                 mask_head: nn.Module | None = None, mask_predictor: nn.Module | None = None,
                 loss_mask: nn.Module | None = None) -> None:
        super().__init__(box_roi_pool, box_head, box_predictor, fg_iou_thresh, bg_iou_thresh, 512, 0.25,
                         tuple(bbox_reg_weights), score_thresh, nms_thresh, detections_per_img,
                         mask_roi_pool=mask_roi_pool, mask_head=mask_head, mask_predictor=mask_predictor)
        self.fg_bg_sampler = sampler
        self.loss_cls = loss_cls
        self.loss_bbox = loss_bbox
        self.balancer = balancer
        self.add_gt_as_proposals = add_gt_as_proposals
        self.loss_mask = loss_mask
        self.sampling_stats: dict[str, Tensor] = {}
        self.balance_stats: dict[str, Tensor] = {}

    def match(self, proposals: list[Tensor], gt_boxes: list[Tensor], gt_labels: list[Tensor]
              ) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """torchvision's ``assign_targets_to_proposals``, also returning each proposal's IoU."""
        matched_idxs, labels, ious = [], [], []
        for props, gt, gt_lab in zip(proposals, gt_boxes, gt_labels):
            n = props.shape[0]
            if gt.numel() == 0:
                matched_idxs.append(torch.zeros(n, dtype=torch.int64, device=props.device))
                labels.append(torch.zeros(n, dtype=torch.int64, device=props.device))
                ious.append(torch.zeros(n, dtype=props.dtype, device=props.device))
                continue
            quality = box_iou(gt, props)
            matched = self.proposal_matcher(quality)
            lab = gt_lab[matched.clamp(min=0)].to(torch.int64)
            lab[matched == self.proposal_matcher.BELOW_LOW_THRESHOLD] = 0
            lab[matched == self.proposal_matcher.BETWEEN_THRESHOLDS] = -1
            matched_idxs.append(matched.clamp(min=0))
            labels.append(lab)
            ious.append(quality.max(dim=0).values)
        return matched_idxs, labels, ious

    @torch.no_grad()
    def score_proposals(self, features: dict[str, Tensor], proposals: list[Tensor], image_shapes: list[tuple[int, int]],
                        labels: list[Tensor], matched_gt: list[Tensor], with_box_loss: bool) -> list[Tensor]:
        """Each proposal's loss under the current head, without gradient (for OHEM)."""
        logits, deltas = self.box_predictor(self.box_head(self.box_roi_pool(features, proposals, image_shapes)))
        lab = torch.cat(labels)
        losses = F.cross_entropy(logits, lab.clamp(min=0), reduction="none")
        if with_box_loss:
            targets = torch.cat(self.box_coder.encode(matched_gt, proposals))
            pred = deltas.reshape(deltas.shape[0], -1, 4)[torch.arange(len(lab)), lab.clamp(min=0)]
            box = F.smooth_l1_loss(pred, targets, beta=1 / 9, reduction="none").sum(1)
            losses = losses + torch.where(lab > 0, box, torch.zeros_like(box))
        return list(losses.split([len(p) for p in proposals]))

    def sample_proposals(self, features: dict[str, Tensor], proposals: list[Tensor],
                         image_shapes: list[tuple[int, int]], targets: list[dict[str, Tensor]]) -> dict[str, Any]:
        """Match, weigh and keep proposals (weight > 0). Returns per-image lists."""
        self.check_targets(targets)
        dtype, device = proposals[0].dtype, proposals[0].device
        gt_boxes = [t["boxes"].to(dtype) for t in targets]
        if self.add_gt_as_proposals:
            proposals = self.add_gt_proposals(proposals, gt_boxes)
        matched_idxs, labels, ious = self.match(proposals, gt_boxes, [t["labels"] for t in targets])
        gt_or_zero = [g if g.numel() else torch.zeros((1, 4), dtype=dtype, device=device) for g in gt_boxes]
        matched_gt = [g[m] for g, m in zip(gt_or_zero, matched_idxs)]
        losses: list[Tensor | None] = [None] * len(proposals)
        if self.fg_bg_sampler.needs_losses:
            losses = self.score_proposals(features, proposals, image_shapes, labels, matched_gt,
                                          getattr(self.fg_bg_sampler, "with_box_loss", False))
        weights = self.fg_bg_sampler([Candidates(lab, iou, m, loss) for lab, iou, m, loss
                                      in zip(labels, ious, matched_idxs, losses)])
        out: dict[str, list[Tensor]] = {k: [] for k in ("proposals", "matched_idxs", "labels", "weights", "ious",
                                                          "matched_gt")}
        for img, w in enumerate(weights):
            keep = torch.where(w > 0)[0]
            out["proposals"].append(proposals[img][keep])
            out["matched_idxs"].append(matched_idxs[img][keep])
            out["labels"].append(labels[img][keep])
            out["weights"].append(w[keep])
            out["ious"].append(ious[img][keep])
            out["matched_gt"].append(matched_gt[img][keep])

        out["regression_targets"] = list(self.box_coder.encode(out["matched_gt"], out["proposals"]))
        self.sampling_stats = sampling_stats(torch.cat(out["labels"]), torch.cat(out["ious"]), len(proposals),
                                             self.box_predictor.cls_score.out_features - 1)
        return out

    def box_losses(self, class_logits: Tensor, box_regression: Tensor, samples: dict[str, Any]
                   ) -> tuple[dict[str, Tensor], BalanceContext]:
        labels = torch.cat(samples["labels"])
        weights = torch.cat(samples["weights"])
        targets = torch.cat(samples["regression_targets"])
        positive = torch.where(labels > 0)[0]
        deltas = box_regression.reshape(box_regression.shape[0], -1, 4)[positive, labels[positive]]
        normalizer = labels.numel()
        cls_weight, cls_normalizer = weights, float(normalizer)
        sampler = self.fg_bg_sampler
        if sampler.soft:
            with torch.no_grad():
                plain = F.cross_entropy(class_logits, labels, reduction="none")
                pred_ious = torch.zeros_like(plain)
                pred_ious[positive] = delta_iou(deltas, targets[positive], self.box_coder.weights)
            cls_weight = sampler.reweight(class_logits, labels, labels, gt_ids=batch_gt_ids(samples["matched_idxs"]),
                                          pred_ious=pred_ious, loss=plain)
            cls_normalizer = sampler.normalizer(normalizer, positive.numel())
        pred, goal = box_loss_inputs(self.loss_bbox, self.box_coder, deltas, targets[positive],
                                     torch.cat(samples["proposals"])[positive],
                                     torch.cat(samples["matched_gt"])[positive])
        per_box = self.loss_bbox.per_box(pred, goal)
        losses = {
            "loss_classifier": self.loss_cls(class_logits, labels, cls_weight, cls_normalizer),
            "loss_box_reg": self.loss_bbox.reduce(per_box, weights[positive], normalizer),
        }
        context = BalanceContext(class_logits, labels, positive, self.loss_bbox.loss_weight * per_box,
                                 float(normalizer), False, "loss_classifier", "loss_box_reg")
        return losses, context

    def forward(self, features: dict[str, Tensor], proposals: list[Tensor], image_shapes: list[tuple[int, int]],
                targets: list[dict[str, Tensor]] | None = None) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        if not self.training:
            return super().forward(features, proposals, image_shapes, targets)
        if targets is None:
            raise ValueError("targets are required in training mode")
        samples = self.sample_proposals(features, proposals, image_shapes, targets)
        box_features = self.box_head(self.box_roi_pool(features, samples["proposals"], image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        losses, context = self.box_losses(class_logits, box_regression, samples)
        if self.has_mask():
            positive = [torch.where(lab > 0)[0] for lab in samples["labels"]]
            mask_proposals = [p[i] for p, i in zip(samples["proposals"], positive)]
            mask_matched = [m[i] for m, i in zip(samples["matched_idxs"], positive)]
            mask_features = self.mask_roi_pool(features, mask_proposals, image_shapes)
            mask_logits = self.mask_predictor(self.mask_head(mask_features))
            args = (mask_logits, mask_proposals, [t["masks"] for t in targets], [t["labels"] for t in targets],
                    mask_matched)
            losses["loss_mask"] = maskrcnn_loss(*args) if self.loss_mask is None else pixel_mask_loss(self.loss_mask,
                                                                                                       *args)
        losses, self.balance_stats = apply_balancer(self.balancer, losses, context)
        return [], losses


def pixel_mask_loss(loss: nn.Module, mask_logits: Tensor, proposals: list[Tensor], gt_masks: list[Tensor],
                    gt_labels: list[Tensor], matched: list[Tensor]) -> Tensor:
    """Mask R-CNN's mask loss with a pixel loss of ``detimb.losses`` (cross_entropy, focal,
    dice): each RoI's mask logits for its class are binary logits ``x``; as softmax logits
    ``[0, x]`` they feed the softmax loss, so cross_entropy equals torchvision's BCE. Targets
    are torchvision's RoIAlign-projected masks, binarised at 0.5; every pixel of every
    positive RoI is a candidate, averaged."""
    size = mask_logits.shape[-1]
    labels = torch.cat([lab[idx] for lab, idx in zip(gt_labels, matched)])
    targets = torch.cat([project_masks_on_boxes(m, p, i, size) for m, p, i in zip(gt_masks, proposals, matched)])
    if targets.numel() == 0:
        return mask_logits.sum() * 0
    logits = mask_logits[torch.arange(labels.shape[0], device=labels.device), labels]
    return loss(binary_as_two_class(logits.reshape(-1)), (targets.reshape(-1) >= 0.5).long(), None, targets.numel())
