"""RoI heads whose training objective is injected."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.detection.roi_heads import RoIHeads, maskrcnn_loss, project_masks_on_boxes
from torchvision.ops import boxes as box_ops

from detimb.errors import ConfigError
from detimb.losses import ClassificationLoss, Form
from detimb.losses.segmentation import binary_as_two_class
from detimb.models.heads.matching import match_to_ground_truth
from detimb.models.heads.batch import Predictions, Targets
from detimb.models.heads.calibration import ScoreCalibration
from detimb.models.heads.objective import HeadObjective


class DetimbRoIHeads(RoIHeads):
    """torchvision's RoIHeads (box branch, optional mask branch) whose box losses come from
    ``objective`` (sampler, classification loss, box loss, balancer; see ``HeadObjective``).

    Training: ground-truth boxes join the proposals (``add_gt_as_proposals``), proposals
    are matched to ground truth (IoU >= fg_iou_thresh positive, < bg_iou_thresh negative),
    the objective's sampler weighs them (scoring every proposal under the head's losses
    without gradient when it ranks by loss), and only proposals of weight > 0 are pooled.
    With the default slots (random 512 @ 0.25, CE, smooth L1 beta 1/9) the losses equal
    torchvision's ``fastrcnn_loss``. The mask loss is torchvision's (per-pixel BCE on the
    matched class's mask) unless ``loss_mask`` gives a pixel loss of ``detimb.losses``
    (see ``pixel_mask_loss``); it is added after the objective's balancer. Inference is
    torchvision's, with the class scores the classification loss defines (``roi_scores``:
    softmax for softmax losses, which is torchvision's; sigmoid for sigmoid losses; the
    loss's own for EQLv2 and Seesaw with objectness). With LVIS-style data, the labels
    each target lists as verified absent (``neg_labels``) reach the loss (the federated
    loss uses them). torchvision's own sampler attribute is left unused. A post-hoc
    ``calibration`` (NorCal, logit adjustment; ``calibrate``) replaces the softmax scores
    at inference.
    """

    def __init__(self, box_roi_pool: nn.Module, box_head: nn.Module, box_predictor: nn.Module,
                 fg_iou_thresh: float, bg_iou_thresh: float, bbox_reg_weights: tuple[float, ...],
                 score_thresh: float, nms_thresh: float, detections_per_img: int, objective: HeadObjective,
                 add_gt_as_proposals: bool = True, mask_roi_pool: nn.Module | None = None,
                 mask_head: nn.Module | None = None, mask_predictor: nn.Module | None = None,
                 loss_mask: ClassificationLoss | None = None) -> None:
        super().__init__(box_roi_pool, box_head, box_predictor, fg_iou_thresh, bg_iou_thresh, batch_size_per_image=1,
                         positive_fraction=1.0, bbox_reg_weights=tuple(bbox_reg_weights), score_thresh=score_thresh,
                         nms_thresh=nms_thresh, detections_per_img=detections_per_img, mask_roi_pool=mask_roi_pool,
                         mask_head=mask_head, mask_predictor=mask_predictor)
        del self.fg_bg_sampler
        self.objective = objective
        self.add_gt_as_proposals = add_gt_as_proposals
        self.loss_mask = loss_mask
        self.calibration: ScoreCalibration | None = None

    def calibrate(self, calibration: ScoreCalibration | None) -> None:
        """Score with ``calibration`` at inference (None: the loss's own scores). It
        calibrates softmax logits: a sigmoid classifier, or Seesaw's objectness layout, is refused."""
        if calibration is not None:
            loss, classes = self.objective.loss_cls, self.objective.num_classes
            if loss.form is not Form.SOFTMAX or classes is None or loss.roi_outputs(classes) != classes:
                raise ConfigError(f"model.roi_head.calibration: {type(calibration).__name__} calibrates a softmax"
                                  f" classifier of background + K columns, and this head's loss is"
                                  f" {type(loss).__name__}. Fix: remove the calibration, or train with a softmax loss")
        self.calibration = calibration

    def predict(self, features: dict[str, Tensor], proposals: list[Tensor],
                image_shapes: list[tuple[int, int]]) -> Predictions:
        """Class logits (K, C) and per-class deltas (K, C, 4) of the K proposals of all images."""
        logits, deltas = self.box_predictor(self.box_head(self.box_roi_pool(features, proposals, image_shapes)))
        return Predictions(logits, deltas.reshape(deltas.shape[0], deltas.shape[1] // 4, 4))

    def forward(self, features: dict[str, Tensor], proposals: list[Tensor], image_shapes: list[tuple[int, int]],
                targets: list[dict[str, Tensor]] | None = None) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        if not self.training:
            return super().forward(features, proposals, image_shapes, targets)
        if targets is None:
            raise ValueError("targets are required in training mode")
        self.check_targets(targets)
        # the ground truth stays float32 for matching and regression targets (torchvision casts it to the
        # proposals' dtype, float16 under autocast, which rounds boxes above 1024 px); as proposals it joins theirs
        gt_boxes = [t["boxes"] for t in targets]
        if self.add_gt_as_proposals:
            proposals = self.add_gt_proposals(proposals, [g.to(proposals[0].dtype) for g in gt_boxes])
        matches = [match_to_ground_truth(self.proposal_matcher, p, g, t["labels"])
                   for p, g, t in zip(proposals, gt_boxes, targets)]
        batch = Targets.from_matches(matches, proposals, gt_boxes, *self.lvis_labels(targets))
        with torch.no_grad():
            weights = self.objective.sample(batch, lambda: self.predict(features, proposals, image_shapes))
        keep = torch.where(weights > 0)[0]
        kept = batch.select(keep)
        kept_proposals = list(kept.boxes.split(kept.sizes()))  # type: ignore[union-attr]
        losses = self.objective(kept, self.predict(features, kept_proposals, image_shapes), weights[keep])
        if self.has_mask():
            losses["loss_mask"] = self.mask_losses(features, kept, image_shapes, targets)
        return [], losses

    def lvis_labels(self, targets: list[dict[str, Tensor]]) -> tuple[Tensor | None, Tensor | None]:
        """The batch's verified-absent labels (M,) and each image's not-exhaustive labels
        (B, K + 1) bool, from LVIS-style targets; (None, None) for plain COCO data."""
        if not all("neg_labels" in t and "not_exhaustive_labels" in t for t in targets):
            return None, None
        device = targets[0]["labels"].device
        width = self.box_predictor.bbox_pred.out_features // 4
        flags = torch.zeros(len(targets), width, dtype=torch.bool, device=device)
        for i, t in enumerate(targets):
            flags[i, t["not_exhaustive_labels"]] = True
        return torch.unique(torch.cat([t["neg_labels"] for t in targets])), flags

    def postprocess_detections(self, class_logits: Tensor, box_regression: Tensor, proposals: list[Tensor],
                               image_shapes: list[tuple[int, int]]) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """torchvision's ``RoIHeads.postprocess_detections`` with the scores of the head's
        classification loss (``roi_scores``) in place of its softmax: per image, clip the
        class-specific boxes, drop scores <= score_thresh and boxes under 0.01 px, class-wise
        NMS, keep the top ``detections_per_img``."""
        if self.calibration is not None:
            scores = self.calibration(class_logits)  # (N, K)
        else:
            scores = self.objective.loss_cls.roi_scores(class_logits)
        num_classes = scores.shape[1] + 1
        pred_boxes = self.box_coder.decode(box_regression, proposals).reshape(len(scores), num_classes, 4)[:, 1:]
        sizes = [len(p) for p in proposals]
        out: tuple[list[Tensor], list[Tensor], list[Tensor]] = ([], [], [])
        for boxes, image_scores, shape in zip(pred_boxes.split(sizes), scores.split(sizes), image_shapes):
            boxes = box_ops.clip_boxes_to_image(boxes, shape)
            labels = torch.arange(1, num_classes, device=scores.device).view(1, -1).expand_as(image_scores)
            boxes, image_scores, labels = boxes.reshape(-1, 4), image_scores.reshape(-1), labels.reshape(-1)
            keep = torch.where(image_scores > self.score_thresh)[0]
            boxes, image_scores, labels = boxes[keep], image_scores[keep], labels[keep]
            keep = box_ops.remove_small_boxes(boxes, min_size=1e-2)
            boxes, image_scores, labels = boxes[keep], image_scores[keep], labels[keep]
            keep = box_ops.batched_nms(boxes, image_scores, labels, self.nms_thresh)[: self.detections_per_img]
            for part, value in zip(out, (boxes[keep], image_scores[keep], labels[keep])):
                part.append(value)
        return out

    def mask_losses(self, features: dict[str, Tensor], kept: Targets, image_shapes: list[tuple[int, int]],
                    targets: list[dict[str, Tensor]]) -> Tensor:
        """Mask R-CNN's mask term over the kept positive proposals."""
        positive = kept.select(torch.where(kept.labels > 0)[0])
        sizes = positive.sizes()
        mask_proposals = list(positive.boxes.split(sizes))  # type: ignore[union-attr]
        mask_matched = list(positive.gt_index.split(sizes))
        mask_logits = self.mask_predictor(self.mask_head(self.mask_roi_pool(features, mask_proposals, image_shapes)))
        args = (mask_logits, mask_proposals, [t["masks"] for t in targets], [t["labels"] for t in targets],
                mask_matched)
        return maskrcnn_loss(*args) if self.loss_mask is None else pixel_mask_loss(self.loss_mask, *args)


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
