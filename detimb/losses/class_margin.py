"""Effective class-margin loss (Hyun Cho and Krähenbühl, "Long-tail Detection with
Effective Class-Margins", ECCV 2022), as the authors' ``janghyuncho/ECM-Loss`` @a637240
(``mmdet/models/losses/effective_class_margin_loss.py``, ``ecm_utils.py``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from detimb.losses.buffers import adopt_saved_shapes
from detimb.losses.classification import CLS_LOSSES, ClassificationLoss, Columns, Form
from detimb.losses.statistics import ClassStatistics

FG_BG_RATIO = 6.3313  # the release's background:foreground proposal ratio, measured on Mask R-CNN


def class_margins(instances: Tensor, fg_bg_ratio: float) -> tuple[Tensor, Tensor, Tensor]:
    """(C,) positive margins, negative margins and class weights of the columns
    [background, class 1, ..., class K] from the K classes' training instance counts,
    in float64, as the release's ``compute_weight`` and ``get_detection_weight``:
    ``n = [sum(n_fg) * fg_bg_ratio, n_1..n_K]``, ``m+ = log((n^1/4 + n-^1/4) / n-^1/4)``,
    ``m- = log((n^1/4 + n-^1/4) / n^1/4)`` with ``n- = sum(n) - n``, and
    ``w = a log((1 + a) / a)`` with ``a = n- / n``."""
    fg = instances.to(torch.float64).clamp(min=1)
    n = torch.cat([fg.sum()[None] * fg_bg_ratio, fg])
    n_neg = n.sum() - n
    root_pos, root_neg = n.pow(0.25), n_neg.pow(0.25)
    pos_margin = ((root_pos + root_neg) / root_neg).log()
    neg_margin = ((root_pos + root_neg) / root_pos).log()
    a = n_neg / n
    return pos_margin, neg_margin, a * ((1 + a) / a).log()


@CLS_LOSSES.register("ecm")
class EffectiveClassMarginLoss(ClassificationLoss):
    """Sigmoid cross-entropy over the K + 1 columns (column 0 background, target 1 on
    background candidates) with per-class margins from the training instance counts:
    ``p+ = e^(x + m+) / (e^(x + m+) + e^(-x + m-)) = sigmoid(2x + m+ - m-)``, the loss
    ``-(y log p+ + (1 - y) log(1 - p+))`` times the class weight ``w``, summed and divided
    by the head's normaliser (the number of RoIs; the release divides by the batch of
    RoIs and ignores mmdetection's label weights, which are 1 on every sampled RoI).
    Inference is a plain sigmoid without margins: ``sigmoid(x_j) * (1 - sigmoid(x_bg))``
    (the release's ``get_activation``). No long-tail hyperparameter; default
    fg_bg_ratio 6.3313 (the release's), loss_weight 1. Published with the cosine classifier
    (temperature 20; ``cls_predictor: {type: normed_linear}``) and repeat-factor sampling.

    Differences from the released code: the margins and weights are computed in float64
    (the release's float32 is inaccurate for rare classes at LVIS scale); counts are the
    training *instance* counts (the release's ``lvis_v1_image_count.pkl`` holds LVIS v1
    instance counts despite its name); a class absent from the training set counts as one
    instance (the release's formulas give inf and NaN at zero). Built for the RoI head; in
    RetinaNet and FCOS column 0 is the never-positive column and takes the background
    margins.
    """

    form = Form.SIGMOID
    uses_class_stats = True
    per_class = True
    columns = Columns.WITH_BACKGROUND

    def __init__(self, fg_bg_ratio: float = FG_BG_RATIO, loss_weight: float = 1.0,
                 class_stats: ClassStatistics | None = None) -> None:
        super().__init__(loss_weight)
        if fg_bg_ratio <= 0:
            raise ValueError(f"ecm needs fg_bg_ratio > 0, got {fg_bg_ratio}")
        self.fg_bg_ratio = fg_bg_ratio
        margin = weight = torch.zeros(0, dtype=torch.float64)
        if class_stats is not None:
            pos, neg, weight = class_margins(torch.tensor(class_stats.instances), fg_bg_ratio)
            margin = pos - neg
        self.register_buffer("margin", margin)  # (K + 1,) m+ - m-, column 0 background
        self.register_buffer("class_weight", weight)  # (K + 1,)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        adopt_saved_shapes(self, state_dict, prefix, ("margin", "class_weight"))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def elementwise(self, logits: Tensor, targets: Tensor) -> Tensor:
        if self.margin.numel() == 0:
            raise ValueError("ecm needs the training set's class statistics; build the model with class_stats"
                             " (the trainer does), or load a checkpoint that has them")
        if logits.dim() != 2 or logits.shape[1] != self.margin.numel():
            raise ValueError(f"ecm: (N, {self.margin.numel()}) logits expected (background and"
                             f" {self.margin.numel() - 1} classes), got {tuple(logits.shape)}")
        margin, weight = self.margin.to(logits.dtype), self.class_weight.to(logits.dtype)
        bce = F.binary_cross_entropy_with_logits(2 * logits + margin, targets.to(logits.dtype), reduction="none")
        return bce * weight
