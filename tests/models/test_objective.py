"""The one objective every head calls: every sampler in every head on the edge batches,
OHEM ranking by the configured losses, focal's loss scale, and the heads' shared code."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import generalized_box_iou_loss

from detimb.data.coco import CocoDetection, collate
from detimb.models import build_detector, build_model
from detimb.models.heads.batch import Predictions, Targets
from detimb.models.heads.objective import HeadObjective
from detimb.losses import ClassStatistics
from detimb.samplers import (
    SAMPLERS, ClassBalancedPixelSampler, InstanceBalancedSampler, IoUBalancedSampler, ISRPSampler, OHEMPixelSampler,
    OHEMSampler, RandomPixelSampler, RandomSampler, ScoreHLRSampler,
)
from tests.models.test_detectors import train_step

SAMPLER_ARGS = {
    "random": {"num": 8, "pos_fraction": 0.5}, "instance_balanced": {"num": 8, "pos_fraction": 0.5},
    "iou_balanced": {"num": 8, "pos_fraction": 0.5}, "ohem": {"num": 8, "pos_fraction": 0.5},
    "score_hlr": {"num": 8, "pos_fraction": 0.5},
    "random_pixels": {"num": 8}, "class_balanced_pixels": {"num": 8}, "ohem_pixels": {"min_kept": 4},
    "isr_p": {"base": {"type": "random", "num": 8, "pos_fraction": 0.5}},
}
HEADS = ["rpn", "roi_head", "retina_head", "fcos_head", "ssd_head", "dense"]
EDGES = ["no_ground_truth", "one_image_with_ground_truth", "no_negatives", "single_candidate"]
NUM_CLASSES = 7  # background + the tiny dataset's 6


def sampler_spec(name: str, head: str) -> dict:
    return {"type": name, **SAMPLER_ARGS.get(name, {})}


def build_head_objective(tiny_config, tiny_shapes, head: str, sampler: dict) -> HeadObjective:
    ds = CocoDetection(tiny_shapes / "annotations/train.json", tiny_shapes / "train")
    slot = {"sampler": sampler}
    if sampler["type"] == "focal" and head in ("retina_head", "fcos_head"):
        slot["loss_cls"] = {"type": "binary_cross_entropy"}
    if head == "dense":
        model = build_model(tiny_config("semantic_seg", model={"head": {"channels": 8, **slot}}).model, ds.label_map)
        return model.head.objective
    detector = {"retina_head": "retinanet", "fcos_head": "fcos", "ssd_head": "ssd"}.get(head, "faster_rcnn")
    model = build_detector(tiny_config(detector, model={head: slot}).model, ds.label_map)
    if head == "ssd_head":
        return model.objective
    if head in ("retina_head", "fcos_head"):
        return model.head.objective
    return model.rpn.objective if head == "rpn" else model.roi_heads.objective


def edge_batch(head: str, edge: str, seed: int = 0) -> tuple[Targets, Predictions]:
    """Candidates of two images (one for ``single_candidate``) as ``head`` hands them over."""
    g = torch.Generator().manual_seed(seed)
    sizes = [1] if edge == "single_candidate" else [40, 40]
    n = sum(sizes)
    image = torch.cat([torch.full((s,), i, dtype=torch.int64) for i, s in enumerate(sizes)])
    classes = torch.randint(1, NUM_CLASSES, (n,), generator=g) if head != "rpn" else torch.ones(n, dtype=torch.int64)
    if edge == "no_ground_truth":
        labels = torch.where(torch.rand(n, generator=g) < 0.1, -1, 0)
    elif edge == "one_image_with_ground_truth":
        labels = torch.where(image == 0, torch.where(torch.rand(n, generator=g) < 0.3, classes, 0), 0)
    else:  # no negatives / a single positive candidate
        labels = torch.where(torch.rand(n, generator=g) < 0.1, -1, classes) if n > 1 else classes
    if head == "dense":
        labels = labels.clamp(max=NUM_CLASSES - 1)
        targets = Targets(labels, torch.zeros(n), torch.zeros_like(labels), image, len(sizes))
        return targets, Predictions(torch.randn(n, NUM_CLASSES, generator=g).requires_grad_())
    xy = torch.rand(n, 2, generator=g) * 40
    boxes = torch.cat([xy, xy + 8 + torch.rand(n, 2, generator=g) * 16], dim=1)
    gt = torch.where((labels > 0)[:, None], boxes + torch.randn(n, 4, generator=g), torch.zeros_like(boxes))
    ious = torch.where(labels > 0, 0.5 + 0.5 * torch.rand(n, generator=g), 0.4 * torch.rand(n, generator=g))
    gt_index = torch.randint(0, 3, (n,), generator=g)
    targets = Targets(labels, ious, gt_index, image, len(sizes), boxes, gt)
    if head == "rpn":
        return targets, Predictions(torch.randn(n, generator=g).requires_grad_(),
                                    (0.1 * torch.randn(n, 4, generator=g)).requires_grad_())
    if head == "roi_head":
        return targets, Predictions(torch.randn(n, NUM_CLASSES, generator=g).requires_grad_(),
                                    (0.1 * torch.randn(n, NUM_CLASSES, 4, generator=g)).requires_grad_())
    if head == "fcos_head":  # distances from the anchor point to the four sides, in anchor sizes
        return targets, Predictions(torch.randn(n, NUM_CLASSES, generator=g).requires_grad_(),
                                    (0.5 + 0.5 * torch.rand(n, 4, generator=g)).requires_grad_())
    return targets, Predictions(torch.randn(n, NUM_CLASSES, generator=g).requires_grad_(),
                                (0.1 * torch.randn(n, 4, generator=g)).requires_grad_())


def check_quota(sampler, weights: torch.Tensor, targets: Targets) -> None:
    """Each image's kept candidates within the sampler's quota; ignored ones never kept."""
    kept = weights > 0
    if isinstance(sampler, OHEMPixelSampler):  # batch-wide: at least min_kept per image survive
        valid = int((targets.labels >= 0).sum())
        assert int(kept.sum()) >= min(sampler.min_kept * targets.num_images, valid)
        return
    assert not kept[targets.labels < 0].any()
    for i in range(targets.num_images):
        mine = targets.image == i
        pos, neg = int((kept & mine & (targets.labels > 0)).sum()), int((kept & mine & (targets.labels == 0)).sum())
        valid = int((mine & (targets.labels >= 0)).sum())
        base = sampler.base if isinstance(sampler, ISRPSampler) else sampler
        if isinstance(base, OHEMSampler) and base.mode == "ratio":
            have_pos = int((mine & (targets.labels > 0)).sum())
            assert pos == have_pos and neg <= (base.neg_pos_ratio * pos if pos else base.min_neg)
        elif isinstance(base, (RandomSampler, InstanceBalancedSampler, IoUBalancedSampler, OHEMSampler,
                               ScoreHLRSampler)):
            assert pos <= int(base.num * base.pos_fraction) and pos + neg <= base.num
        elif isinstance(base, (RandomPixelSampler, ClassBalancedPixelSampler)):
            assert pos + neg <= base.num
        elif isinstance(base, OHEMPixelSampler):
            pass  # checked batch-wide above
        else:  # all, focal: every non-ignored candidate
            assert pos + neg == valid


def fits(name: str, head: str) -> bool:
    needs = SAMPLERS.get(name).needs
    return not (head == "dense" and needs.geometry) and not (head != "roi_head" and needs.predictions)


CASES = [(s, h) for s in SAMPLERS.names() for h in HEADS if fits(s, h)]


@pytest.mark.parametrize("edge", EDGES)
@pytest.mark.parametrize("sampler,head", CASES)
def test_every_sampler_in_every_head_on_edge_batches(tiny_config, tiny_shapes, sampler, head, edge):
    objective = build_head_objective(tiny_config, tiny_shapes, head, sampler_spec(sampler, head))
    targets, predictions = edge_batch(head, edge)
    torch.manual_seed(0)
    weights = objective.sample(targets, predictions.detach)
    check_quota(objective.sampler, weights, targets)
    losses = objective(targets, predictions)
    assert losses and all(math.isfinite(v.item()) for v in losses.values()), losses
    sum(losses.values()).backward()
    for tensor in (predictions.cls_logits, predictions.deltas):
        if tensor is not None and tensor.grad is not None:
            assert torch.isfinite(tensor.grad).all()
    assert all(torch.isfinite(v).all() for v in objective.stats.values())


@pytest.mark.parametrize("ohem_mode", ["quota", "ratio"])
@pytest.mark.parametrize("detector,stage", [("faster_rcnn", "rpn"), ("faster_rcnn", "roi_head"),
                                            ("mask_rcnn", "roi_head"), ("retinanet", "retina_head")])
@pytest.mark.parametrize("with_gt", ["none", "first_image_only"])
def test_batches_without_ground_truth_train(tiny_config, tiny_shapes, detector, stage, ohem_mode, with_gt):
    """The reported crash: OHEM (ratio, min_neg 0) on a batch without ground truth, in full models."""
    sampler = {"type": "ohem", "mode": ohem_mode, "num": 16, "pos_fraction": 0.5}
    cfg = tiny_config(detector, model={stage: {"sampler": sampler}})
    ds = CocoDetection(tiny_shapes / "annotations/train.json", tiny_shapes / "train",
                       with_masks=detector == "mask_rcnn")
    images, targets = collate([ds[0], ds[1]])
    for i, t in enumerate(targets):
        if with_gt == "none" or i > 0:
            t["boxes"], t["labels"] = t["boxes"][:0], t["labels"][:0]
            if "masks" in t:
                t["masks"] = t["masks"][:0]
    model = build_detector(cfg.model, ds.label_map).train()
    losses = model(images, targets)
    assert all(math.isfinite(v.item()) for v in losses.values()), losses
    sum(losses.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_ohem_ranks_by_the_configured_weighted_ce_and_giou(tiny_config, tiny_shapes):
    counts = [24, 12, 8, 6, 4, 2]
    ds = CocoDetection(tiny_shapes / "annotations/train.json", tiny_shapes / "train")
    slot = {"sampler": {"type": "ohem", "num": 10, "pos_fraction": 0.5, "with_box_loss": True},
            "loss_cls": {"type": "cross_entropy", "class_weight": "inverse_freq"},
            "loss_bbox": {"type": "giou", "loss_weight": 2.0}}
    model = build_detector(tiny_config(model={"roi_head": slot}).model, ds.label_map,
                           ClassStatistics.from_instances(counts))
    objective = model.roi_heads.objective
    targets, predictions = edge_batch("roi_head", "one_image_with_ground_truth", seed=3)
    # independently: inverse-frequency weights, background 1, foreground mean 1
    inv = torch.tensor([1.0 / c for c in counts])
    class_w = torch.cat([torch.ones(1), inv * len(inv) / inv.sum()])
    logits = predictions.cls_logits.detach()
    want = F.cross_entropy(logits, targets.labels.clamp(min=0), weight=class_w, reduction="none")
    positive = torch.where(targets.labels > 0)[0]
    deltas = predictions.deltas.detach()[positive, targets.labels[positive]]
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    pred_boxes = coder.decode_single(deltas, targets.boxes[positive])
    want[positive] += 2.0 * generalized_box_iou_loss(pred_boxes, targets.gt_boxes[positive], reduction="none")
    got = objective.candidate_losses(targets, predictions)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6)
    weights = objective.sample(targets, predictions.detach)
    for i in range(2):
        for sign in (1, 0):
            mine = (targets.image == i) & ((targets.labels > 0) if sign else (targets.labels == 0))
            chosen = torch.where(mine & (weights > 0))[0]
            k = len(chosen)
            hardest = torch.where(mine)[0][want[mine].topk(k).indices] if k else chosen
            assert set(chosen.tolist()) == set(hardest.tolist())


def test_focal_in_two_stage_heads_starts_at_retinanets_loss_scale(tiny_config, tiny_shapes):
    ds = CocoDetection(tiny_shapes / "annotations/train.json", tiny_shapes / "train")
    images, targets = collate([ds[0], ds[1], ds[2]])
    torch.manual_seed(0)
    retina = build_detector(tiny_config("retinanet").model, ds.label_map).train()  # == torchvision's (equivalence)
    reference = retina(images, targets)["classification"].item()
    focal = {"sampler": {"type": "focal"}}
    cfg = tiny_config(model={"rpn": {**focal, "loss_cls": {"type": "binary_cross_entropy"}},
                             "roi_head": {**focal, "loss_cls": {"type": "cross_entropy"}}})
    torch.manual_seed(0)
    losses = build_detector(cfg.model, ds.label_map).train()(images, targets)
    for term in ("loss_objectness", "loss_classifier"):
        assert reference / 2 <= losses[term].item() <= reference * 2, (term, losses[term].item(), reference)


def test_focal_prior_sets_the_two_stage_classifier_biases(tiny_config, tiny_shapes):
    ds = CocoDetection(tiny_shapes / "annotations/train.json", tiny_shapes / "train")
    cfg = tiny_config(model={"rpn": {"sampler": {"type": "focal", "prior": 0.02}},
                             "roi_head": {"sampler": {"type": "focal"}}})
    model = build_detector(cfg.model, ds.label_map)
    assert torch.allclose(model.rpn.head.cls_logits.bias, torch.tensor(-math.log(0.98 / 0.02)))
    probs = torch.softmax(model.roi_heads.box_predictor.cls_score.bias, 0)
    assert probs[0].item() == pytest.approx(0.99, rel=1e-6)
    assert probs[1:].tolist() == pytest.approx([0.01 / 6] * 6, rel=1e-5)


def test_sampler_stats_are_logged_under_the_head(tiny_config, tiny_shapes):
    _, model = train_step(tiny_config(), tiny_shapes)
    rpn, roi = model.rpn.objective.stats, model.roi_heads.objective.stats
    # tiny config: RPN random 32 @ 0.5 and RoI random 32 @ 0.25 per image
    assert 0 < rpn["pos_per_image"] <= 16 and rpn["pos_per_image"] + rpn["neg_per_image"] <= 32
    assert 0 < roi["pos_per_image"] <= 8 and roi["pos_per_image"] + roi["neg_per_image"] <= 32
    assert roi["pos_class_frac"].sum().item() == pytest.approx(1.0)
