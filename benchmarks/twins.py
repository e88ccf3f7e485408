"""torchvision's own detector holding a detimb detector's modules and hyper-parameters: the
reference that the equivalence tests and the train-step benchmark compare against."""

from __future__ import annotations

import copy

from torchvision.models.detection import FasterRCNN, MaskRCNN


def torchvision_twin(model, cfg, num_classes, with_masks):  # noqa: ANN001, ANN201
    """FasterRCNN (MaskRCNN with ``with_masks``) sharing ``model``'s backbone, anchors, heads and
    the hyper-parameters of ``cfg.model``; load ``model.state_dict()`` into it for equal weights."""
    r, h, t = cfg.model.rpn, cfg.model.roi_head, cfg.model.transform
    kwargs = dict(
        num_classes=None, min_size=t.min_size, max_size=t.max_size, image_mean=list(t.image_mean),
        image_std=list(t.image_std), rpn_anchor_generator=model.rpn.anchor_generator,
        rpn_head=copy.deepcopy(model.rpn.head), rpn_pre_nms_top_n_train=r.pre_nms_top_n_train,
        rpn_post_nms_top_n_train=r.post_nms_top_n_train, rpn_pre_nms_top_n_test=r.pre_nms_top_n_test,
        rpn_post_nms_top_n_test=r.post_nms_top_n_test, rpn_nms_thresh=r.nms_thresh, rpn_fg_iou_thresh=r.fg_iou_thresh,
        rpn_bg_iou_thresh=r.bg_iou_thresh, rpn_score_thresh=r.score_thresh, rpn_batch_size_per_image=r.sampler.num,
        rpn_positive_fraction=r.sampler.pos_fraction, box_roi_pool=model.roi_heads.box_roi_pool,
        box_head=copy.deepcopy(model.roi_heads.box_head), box_predictor=copy.deepcopy(model.roi_heads.box_predictor),
        box_batch_size_per_image=h.sampler.num, box_positive_fraction=h.sampler.pos_fraction,
        box_score_thresh=h.score_thresh, box_nms_thresh=h.nms_thresh, box_detections_per_img=h.detections_per_img,
        box_fg_iou_thresh=h.fg_iou_thresh, box_bg_iou_thresh=h.bg_iou_thresh,
        bbox_reg_weights=tuple(h.bbox_reg_weights),
    )
    if with_masks:
        return MaskRCNN(copy.deepcopy(model.backbone), mask_roi_pool=model.roi_heads.mask_roi_pool,
                        mask_head=copy.deepcopy(model.roi_heads.mask_head),
                        mask_predictor=copy.deepcopy(model.roi_heads.mask_predictor), **kwargs)
    return FasterRCNN(copy.deepcopy(model.backbone), **kwargs)
