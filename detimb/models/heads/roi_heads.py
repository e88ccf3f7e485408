"""RoI heads whose proposal sampler, losses and balancer are injected."""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn
from torchvision.models.detection.roi_heads import RoIHeads, maskrcnn_loss

from detimb.samplers import Sampler


class DetimbRoIHeads(RoIHeads):
    """torchvision's RoIHeads (box branch, optional mask branch) with injected training parts.

    Training: ground-truth boxes join the proposals, proposals are matched to ground truth
    (IoU >= fg_iou_thresh positive, < bg_iou_thresh negative), ``sampler`` weighs them,
    proposals of weight 0 are dropped before RoI pooling, and
    ``loss_cls(logits, labels, w, n)`` / ``loss_bbox(deltas_pos, targets_pos, w_pos, n)`` are
    normalised by the number ``n`` of kept proposals, as torchvision's ``fastrcnn_loss``.
    ``balancer`` (optional) reweighs the resulting terms. The mask loss is torchvision's.
    Inference is torchvision's unchanged.
    """

    def __init__(self, box_roi_pool: nn.Module, box_head: nn.Module, box_predictor: nn.Module,
                 fg_iou_thresh: float, bg_iou_thresh: float, bbox_reg_weights: tuple[float, ...],
                 score_thresh: float, nms_thresh: float, detections_per_img: int, sampler: Sampler,
                 loss_cls: nn.Module, loss_bbox: nn.Module,
                 balancer: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None,
                 mask_roi_pool: nn.Module | None = None, mask_head: nn.Module | None = None,
                 mask_predictor: nn.Module | None = None) -> None:
        super().__init__(box_roi_pool, box_head, box_predictor, fg_iou_thresh, bg_iou_thresh, 512, 0.25,
                         tuple(bbox_reg_weights), score_thresh, nms_thresh, detections_per_img,
                         mask_roi_pool=mask_roi_pool, mask_head=mask_head, mask_predictor=mask_predictor)
        self.fg_bg_sampler = sampler
        self.loss_cls = loss_cls
        self.loss_bbox = loss_bbox
        self.balancer = balancer

    def sample_proposals(self, proposals: list[Tensor], targets: list[dict[str, Tensor]]) -> dict[str, Any]:
        """Match and weigh proposals; keep those with weight > 0. Returns per-image lists."""
        self.check_targets(targets)
        dtype, device = proposals[0].dtype, proposals[0].device
        gt_boxes = [t["boxes"].to(dtype) for t in targets]
        proposals = self.add_gt_proposals(proposals, gt_boxes)
        matched_idxs, labels = self.assign_targets_to_proposals(proposals, gt_boxes, [t["labels"] for t in targets])
        weights = self.fg_bg_sampler(labels)
        out: dict[str, list[Tensor]] = {"proposals": [], "matched_idxs": [], "labels": [], "weights": [],
                                        "matched_gt_boxes": []}
        for img, w in enumerate(weights):
            keep = torch.where(w > 0)[0]
            gt = gt_boxes[img] if gt_boxes[img].numel() else torch.zeros((1, 4), dtype=dtype, device=device)
            out["proposals"].append(proposals[img][keep])
            out["matched_idxs"].append(matched_idxs[img][keep])
            out["labels"].append(labels[img][keep])
            out["weights"].append(w[keep])
            out["matched_gt_boxes"].append(gt[matched_idxs[img][keep]])
        out["regression_targets"] = list(self.box_coder.encode(out["matched_gt_boxes"], out["proposals"]))
        return out

    def box_losses(self, class_logits: Tensor, box_regression: Tensor, samples: dict[str, Any]) -> dict[str, Tensor]:
        labels = torch.cat(samples["labels"])
        weights = torch.cat(samples["weights"])
        targets = torch.cat(samples["regression_targets"])
        positive = torch.where(labels > 0)[0]
        deltas = box_regression.reshape(box_regression.shape[0], -1, 4)[positive, labels[positive]]
        normalizer = labels.numel()
        return {
            "loss_classifier": self.loss_cls(class_logits, labels, weights, normalizer),
            "loss_box_reg": self.loss_bbox(deltas, targets[positive], weights[positive], normalizer),
        }

    def forward(self, features: dict[str, Tensor], proposals: list[Tensor], image_shapes: list[tuple[int, int]],
                targets: list[dict[str, Tensor]] | None = None) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        if not self.training:
            return super().forward(features, proposals, image_shapes, targets)
        if targets is None:
            raise ValueError("targets are required in training mode")
        samples = self.sample_proposals(proposals, targets)
        box_features = self.box_head(self.box_roi_pool(features, samples["proposals"], image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        losses = self.box_losses(class_logits, box_regression, samples)
        if self.has_mask():
            positive = [torch.where(lab > 0)[0] for lab in samples["labels"]]
            mask_proposals = [p[i] for p, i in zip(samples["proposals"], positive)]
            mask_matched = [m[i] for m, i in zip(samples["matched_idxs"], positive)]
            mask_logits = self.mask_predictor(self.mask_head(self.mask_roi_pool(features, mask_proposals, image_shapes)))
            losses["loss_mask"] = maskrcnn_loss(mask_logits, mask_proposals, [t["masks"] for t in targets],
                                                [t["labels"] for t in targets], mask_matched)
        if self.balancer is not None:
            losses = self.balancer(losses)
        return [], losses
