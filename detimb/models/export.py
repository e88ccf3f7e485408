"""Inference models for export: torchvision's own detector classes holding a detimb
detector's modules and settings.

detimb changes only how detectors train; inference is torchvision's. The exported model is
therefore torchvision's ``FasterRCNN`` / ``MaskRCNN`` / ``RetinaNet`` built around the very
same backbone, neck, anchor generator, heads and thresholds (and the same weights), with
none of detimb's training code in it, so TorchScript and the ONNX exporter see exactly
what torchvision supports. Mask R-CNN exports its boxes (the mask branch's paste-back is
not traceable to ONNX; TorchScript keeps it).
"""

from __future__ import annotations

import copy
from typing import Optional

from torch import Tensor, nn
from torchvision.models.detection import FCOS, FasterRCNN, MaskRCNN, RetinaNet
from torchvision.models.detection.fcos import FCOSHead
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from detimb.errors import DetimbError
from detimb.losses import Form
from detimb.models.heads import DetimbFCOS, DetimbRetinaNet
from detimb.models.transform import DetectionTransform


class KeepSizeTransform(GeneralizedRCNNTransform):
    """torchvision's transform without its resize (detimb's ``transform.resize: false``),
    written without ``super()`` so that TorchScript compiles it."""

    def resize(self, image: Tensor, target: Optional[dict[str, Tensor]] = None
               ) -> tuple[Tensor, Optional[dict[str, Tensor]]]:
        return image, target


def _transform(t: DetectionTransform) -> GeneralizedRCNNTransform:
    cls = GeneralizedRCNNTransform if t.resize_enabled else KeepSizeTransform
    return cls(t.min_size[0] if isinstance(t.min_size, (list, tuple)) else t.min_size, t.max_size, list(t.image_mean),
               list(t.image_std), size_divisible=t.size_divisible)


def inference_model(model: nn.Module, *, masks: bool = True) -> nn.Module:
    """torchvision's detector equal to ``model`` in eval mode (same modules, weights and
    settings); ``masks=False`` leaves a Mask R-CNN's mask branch out (its boxes only)."""
    if isinstance(model, DetimbRetinaNet):
        ours = model.head
        head = RetinaNetHead.__new__(RetinaNetHead)
        nn.Module.__init__(head)
        head.classification_head = copy.deepcopy(ours.classification_head)
        head.regression_head = copy.deepcopy(ours.regression_head)
        twin = RetinaNet(copy.deepcopy(model.backbone), model.head.classification_head.num_classes,
                         anchor_generator=copy.deepcopy(model.anchor_generator), head=head,
                         score_thresh=model.score_thresh, nms_thresh=model.nms_thresh,
                         detections_per_img=model.detections_per_img, topk_candidates=model.topk_candidates)
    elif isinstance(model, DetimbFCOS):
        ours_fcos = model.head
        fcos_head = FCOSHead.__new__(FCOSHead)
        nn.Module.__init__(fcos_head)
        fcos_head.box_coder = ours_fcos.box_coder
        fcos_head.classification_head = copy.deepcopy(ours_fcos.classification_head)
        fcos_head.regression_head = copy.deepcopy(ours_fcos.regression_head)
        twin = FCOS(copy.deepcopy(model.backbone), ours_fcos.classification_head.num_classes,
                    anchor_generator=copy.deepcopy(model.anchor_generator), head=fcos_head,
                    center_sampling_radius=model.center_sampling_radius, score_thresh=model.score_thresh,
                    nms_thresh=model.nms_thresh, detections_per_img=model.detections_per_img,
                    topk_candidates=model.topk_candidates)
    elif isinstance(model, GeneralizedRCNN):
        rpn, roi = model.rpn, model.roi_heads
        loss = roi.objective.loss_cls
        num_classes = roi.box_predictor.bbox_pred.out_features // 4
        if loss.form is not Form.SOFTMAX or loss.roi_outputs(num_classes) != num_classes:
            raise DetimbError(f"export: this RoI head scores detections with {type(loss).__name__}'s own form"
                              " (sigmoid, or an objectness branch); torchvision's RoIHeads, which the exported"
                              " model is, scores by softmax. Export a model trained with a softmax loss")
        kwargs = dict(
            num_classes=None, rpn_anchor_generator=copy.deepcopy(rpn.anchor_generator),
            rpn_head=copy.deepcopy(rpn.head), rpn_pre_nms_top_n_test=rpn._pre_nms_top_n["testing"],
            rpn_post_nms_top_n_test=rpn._post_nms_top_n["testing"], rpn_nms_thresh=rpn.nms_thresh,
            rpn_score_thresh=rpn.score_thresh, box_roi_pool=copy.deepcopy(roi.box_roi_pool),
            box_head=copy.deepcopy(roi.box_head), box_predictor=copy.deepcopy(roi.box_predictor),
            box_score_thresh=roi.score_thresh, box_nms_thresh=roi.nms_thresh,
            box_detections_per_img=roi.detections_per_img, bbox_reg_weights=tuple(roi.box_coder.weights))
        if roi.has_mask() and masks:
            twin = MaskRCNN(copy.deepcopy(model.backbone), mask_roi_pool=copy.deepcopy(roi.mask_roi_pool),
                            mask_head=copy.deepcopy(roi.mask_head), mask_predictor=copy.deepcopy(roi.mask_predictor),
                            **kwargs)
        else:
            twin = FasterRCNN(copy.deepcopy(model.backbone), **kwargs)
        twin.rpn.min_size = rpn.min_size
    else:
        raise DetimbError("export covers detectors (Faster R-CNN, Mask R-CNN, RetinaNet, FCOS); got"
                          f" {type(model).__name__}")
    twin.transform = _transform(model.transform)
    return twin.eval()
