"""ISR-N (Score-HLR) on a case ranked by hand."""

import pytest
import torch

from detimb.samplers import Candidates, ScoreHLRSampler
from detimb.samplers.score_hlr import nms_groups


def test_nms_groups_follow_greedy_nms():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60], [2, 0, 12, 10.0]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    # box 3 (0.95) keeps and suppresses 0 (IoU 0.67) and 1 (0.82); box 2 is alone
    assert nms_groups(boxes, scores, 0.5).tolist() == [3, 3, 2, 3]



def test_nms_groups_join_a_box_exactly_at_the_threshold():
    # IoU of the two boxes is 100 / 200 = 0.5 exactly: mmcv's nms_match groups at >= 0.5
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 20.0]])
    assert nms_groups(boxes, torch.tensor([0.9, 0.8]), 0.5).tolist() == [0, 0]
    assert nms_groups(boxes, torch.tensor([0.9, 0.8]), 0.51).tolist() == [0, 1]


def _nms_match_restated(boxes: torch.Tensor, scores: torch.Tensor, thr: float) -> list[int]:
    """mmcv ``ops/csrc/pytorch/cpu/nms.cpp`` ``nms_match_cpu``, line by line, in float32:
    each unsuppressed box (descending score) suppresses later ones at ``ovr >= thr``."""
    x1, y1, x2, y2 = boxes.float().unbind(1)
    areas = (x2 - x1) * (y2 - y1)
    order = torch.argsort(scores, descending=True, stable=True).tolist()
    suppressed = [False] * len(order)
    group = [-1] * len(order)
    t = torch.tensor(thr, dtype=torch.float32)
    for a, i in enumerate(order):
        if suppressed[i]:
            continue
        group[i] = i
        for j in order[a + 1:]:
            if suppressed[j]:
                continue
            w = (torch.minimum(x2[i], x2[j]) - torch.maximum(x1[i], x1[j])).clamp(min=0)
            h = (torch.minimum(y2[i], y2[j]) - torch.maximum(y1[i], y1[j])).clamp(min=0)
            inter = w * h
            if inter / (areas[i] + areas[j] - inter) >= t:
                suppressed[j] = True
                group[j] = i
    return group


@pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
def test_nms_groups_equal_mmcv_nms_match_on_integer_boxes_with_ties(thr: float):
    g = torch.Generator().manual_seed(int(thr * 10))
    xy = torch.randint(0, 12, (60, 2), generator=g).float()
    wh = torch.randint(2, 8, (60, 2), generator=g).float()  # integer boxes: many IoUs tie the threshold
    boxes = torch.cat([xy, xy + wh], 1)
    scores = torch.rand(60, generator=g)
    assert nms_groups(boxes, scores, thr).tolist() == _nms_match_restated(boxes, scores, thr)

def test_score_hlr_ranks_and_weighs_negatives_by_hand():
    # candidate 0 positive; negatives A (0.9), B (0.8, overlapping A), C (0.7, apart), D (0.01, invalid)
    labels = torch.tensor([1, 0, 0, 0, 0])
    scores = torch.tensor([[0.9], [0.9], [0.8], [0.7], [0.01]])
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60], [80, 80, 90, 90.0]])
    losses = torch.tensor([0.1, 2.0, 1.5, 1.0, 0.01])
    sampler = ScoreHLRSampler(num=4, pos_fraction=0.25, k=0.5, bias=0.0, score_thr=0.05, iou_thr=0.5)
    c = Candidates(labels, torch.zeros(5), torch.zeros(5, dtype=torch.int64), losses, scores, boxes)
    weight = sampler([c])[0]
    # groups {A, B}, {C}: importance 3 - rank + s -> A 3.9, C 3.7, B 2.8; h = 0, 1, 2 of m = 3
    w = {"A": 1.0, "C": (2 / 3) ** 0.5, "B": (1 / 3) ** 0.5}
    ratio = (2.0 + 1.5 + 1.0) / (2.0 * w["A"] + 1.5 * w["B"] + 1.0 * w["C"])
    assert weight[0].item() == 1.0 and weight[4].item() == 0.0
    assert weight[1:4].tolist() == pytest.approx([w["A"] * ratio, w["B"] * ratio, w["C"] * ratio], rel=1e-5)


def test_score_hlr_without_valid_negatives_draws_at_random():
    labels = torch.tensor([0, 0, 0, 0])
    c = Candidates(labels, torch.zeros(4), torch.zeros(4, dtype=torch.int64), torch.ones(4),
                   torch.full((4, 2), 0.01), torch.rand(4, 4).sort(1).values)
    weight = ScoreHLRSampler(num=2, pos_fraction=0.5)([c])[0]
    assert sorted(weight.tolist()) == [0.0, 0.0, 1.0, 1.0]
