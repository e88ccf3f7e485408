"""Each head's identity as the objective builder sees it (``HeadSpec``), and the building of a
head's objective from its config slots: sampler, classification loss, box loss, balancer.

A head's capabilities are typed fields of its spec, not comparisons of config paths: which
classifier forms it has, whether it passes per-class scores and boxes to its sampler, whether
it can return a balancer's added term, whether its classifier has per-class outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig
from torchvision.models.detection._utils import BoxCoder

from detimb.config import to_dict
from detimb.data.label_map import LabelMap
from detimb.errors import ConfigError
from detimb.losses import BALANCERS, BOX_LOSSES, CLS_LOSSES, ClassificationLoss, Form
from detimb.losses.statistics import ClassStatistics
from detimb.models.heads.objective import Averaging, HeadObjective, Layout, TermNames
from detimb.registry import Registry
from detimb.samplers import SAMPLERS, FocalSampler


@dataclass(frozen=True, kw_only=True)
class HeadSpec:
    """A head's config path (``where``), its loss terms' names (torchvision's), the classifier
    forms it accepts, its sigmoid layout and averaging, and what it can do: pass per-class
    scores and boxes to its sampler (``reads_predictions``), return a term a balancer adds
    (``returns_added_terms``), and weigh classes (``per_class``: not the RPN's one objectness
    output)."""

    where: str
    terms: TermNames
    forms: tuple[Form, ...]
    layout: Layout = Layout.TORCHVISION
    averaging: Averaging = Averaging.BATCH
    reads_predictions: bool = False
    returns_added_terms: bool = True
    per_class: bool = True

    @property
    def cls_key(self) -> str:
        """The classification loss's slot: ``loss`` in the dense head (no boxes), else ``loss_cls``."""
        return "loss" if self.terms.box is None else "loss_cls"

    @property
    def cls_slot(self) -> str:
        return f"{self.where}.{self.cls_key}"


RPN = HeadSpec(where="model.rpn", terms=TermNames(cls="loss_objectness", box="loss_rpn_box_reg"),
               forms=(Form.SIGMOID,), returns_added_terms=False, per_class=False)
ROI_HEAD = HeadSpec(where="model.roi_head", terms=TermNames(cls="loss_classifier", box="loss_box_reg"),
                    forms=(Form.SOFTMAX, Form.SIGMOID), layout=Layout.ROI, reads_predictions=True)
RETINA_HEAD = HeadSpec(where="model.retina_head", terms=TermNames(cls="classification", box="bbox_regression"),
                       forms=(Form.SIGMOID,), averaging=Averaging.IMAGE)
# torchvision's term names; FCOS's bbox_ctrness stands beside them
FCOS_HEAD = HeadSpec(where="model.fcos_head", terms=TermNames(cls="classification", box="bbox_regression"),
                     forms=(Form.SIGMOID,))
SSD_HEAD = HeadSpec(where="model.ssd_head", terms=TermNames(cls="classification", box="bbox_regression"),
                    forms=(Form.SOFTMAX,))
DENSE_HEAD = HeadSpec(where="model.head", terms=TermNames(cls="loss_seg", box=None), forms=(Form.SOFTMAX,))
HEADS: tuple[HeadSpec, ...] = (RPN, ROI_HEAD, RETINA_HEAD, FCOS_HEAD, SSD_HEAD, DENSE_HEAD)


def _form_error(spec: dict[str, Any], head: HeadSpec, loss: ClassificationLoss) -> ConfigError:
    places = [h.cls_slot for h in HEADS if loss.form in h.forms and (h.per_class or not loss.per_class)]
    fitting = [n for n in CLS_LOSSES.names() if CLS_LOSSES.get(n).form in head.forms]
    return ConfigError(f"{head.cls_slot}: '{spec['type']}' is a {loss.form.value} loss but this head's classifier is"
                       f" {' or '.join(f.value for f in head.forms)}; choose from {', '.join(fitting)};"
                       f" '{spec['type']}' fits in {', '.join(places)}")


def build_classification_loss(spec: dict[str, Any], head: HeadSpec, class_stats: ClassStatistics | None,
                              label_map: LabelMap | None = None) -> ClassificationLoss:
    """A head's classification loss, of a classifier form the head accepts. Losses that use
    the training set's statistics receive ``class_stats``; ``rare_classes`` given as category
    ids or names become label indices."""
    where = head.cls_slot
    factory = CLS_LOSSES.get(spec.get("type", ""), where)
    if "rare_classes" in spec and label_map is not None:
        spec = {**spec, "rare_classes": label_map.labels_of(spec["rare_classes"], f"{where}.rare_classes")}
    loss = CLS_LOSSES.build(spec, where, **({"class_stats": class_stats} if factory.uses_class_stats else {}))
    if loss.form not in head.forms:
        raise _form_error(spec, head, loss)
    if loss.per_class and not head.per_class:
        raise ConfigError(f"{where}: '{spec['type']}' weighs classes, and this head has one objectness output;"
                          f" use it in {ROI_HEAD.cls_slot} (or {RETINA_HEAD.cls_slot})")
    return loss


def _build_slot(registry: Registry, spec: Any, where: str) -> Any:
    return registry.build(to_dict(spec), where)


def build_objective(head_cfg: DictConfig, head: HeadSpec, box_coder: BoxCoder | None, *,
                    class_stats: ClassStatistics | None = None, label_map: LabelMap | None = None) -> HeadObjective:
    """The objective of one head from its config slots (``sampler``, ``loss_cls`` or the
    dense head's ``loss``, ``loss_bbox``, ``balancer``), refusing a focal factor applied
    twice, a sampler that reads what the head does not predict, and a balancer that adds a
    term where the head cannot return it."""
    where = head.where
    sampler = _build_slot(SAMPLERS, head_cfg.sampler, f"{where}.sampler")
    loss = build_classification_loss(to_dict(head_cfg[head.cls_key]), head, class_stats, label_map)
    if isinstance(sampler, FocalSampler) and loss.applies_focal_factor:
        raise ConfigError(f"{where}: the focal sampler already applies the focal factor; with it use"
                          f" loss_cls: {{type: binary_cross_entropy}} (or cross_entropy), not"
                          f" {head_cfg[head.cls_key].type}")
    if sampler.needs.predictions and not head.reads_predictions:
        readers = ", ".join(f"{h.where}.sampler" for h in HEADS if h.reads_predictions)
        raise ConfigError(f"{where}.sampler: {head_cfg.sampler.type} reads per-class scores and boxes of"
                          f" proposals; use it in {readers}")
    loss_bbox = None if head.terms.box is None else _build_slot(BOX_LOSSES, head_cfg.loss_bbox, f"{where}.loss_bbox")
    balancer = None if head_cfg.get("balancer") is None else _build_slot(BALANCERS, head_cfg.balancer,
                                                                          f"{where}.balancer")
    if balancer is not None and balancer.adds_terms and not head.returns_added_terms:
        raise ConfigError(f"{where}.balancer: {head_cfg.balancer.type} adds a loss term, which this head cannot"
                          f" return beside the others; use it in {ROI_HEAD.where} or {RETINA_HEAD.where}")
    return HeadObjective(sampler, loss, loss_bbox, box_coder, head.terms, averaging=head.averaging,
                         balancer=balancer, layout=head.layout,
                         num_classes=None if label_map is None else label_map.num_classes)
