"""Merging tile predictions: NMS and greedy NMM by IoU and IoS, worked out by hand."""

import pytest
import torch

from detimb.engine.merge import box_ios, merge_predictions

# A: a 10 x 10 box; B: its top half (IoU 0.5, IoS 1); C: far away; D: C shifted by 1 px (IoU 81/119)
BOXES = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 5.0], [20.0, 20.0, 30.0, 30.0],
                      [21.0, 21.0, 31.0, 31.0]])
SCORES = torch.tensor([0.9, 0.8, 0.7, 0.6])


def test_ios_by_hand():
    ios = box_ios(BOXES[:2], BOXES)
    assert ios[0].tolist() == pytest.approx([1.0, 1.0, 0.0, 0.0])
    assert box_ios(BOXES[2:3], BOXES[3:4]).item() == pytest.approx(81 / 100)


def test_nms_by_iou_and_by_ios():
    labels = torch.tensor([1, 1, 1, 1])
    boxes, scores, _ = merge_predictions(BOXES, SCORES, labels, "nms", "iou", 0.5)
    # IoU(A, B) = 0.5 is not above 0.5: B stays; IoU(C, D) = 81/119 = 0.68: D goes
    assert scores.tolist() == pytest.approx([0.9, 0.8, 0.7])
    boxes, scores, _ = merge_predictions(BOXES, SCORES, labels, "nms", "ios", 0.5)
    assert scores.tolist() == pytest.approx([0.9, 0.7])  # IoS(A, B) = 1
    assert boxes.tolist() == [[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]]


def test_greedy_nmm_takes_the_union_and_keeps_score_and_label():
    labels = torch.tensor([1, 1, 1, 1])
    boxes, scores, labs = merge_predictions(BOXES, SCORES, labels, "greedy_nmm", "iou", 0.6)
    assert boxes.tolist() == [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 5.0], [20.0, 20.0, 31.0, 31.0]]
    assert scores.tolist() == pytest.approx([0.9, 0.8, 0.7]) and labs.tolist() == [1, 1, 1]
    # a piece cut by a tile border is absorbed by the whole box (IoS 1) even when it scores higher
    piece_first = merge_predictions(BOXES[[1, 0]], torch.tensor([0.9, 0.5]), labels[:2], "greedy_nmm", "ios", 0.5)
    assert piece_first[0].tolist() == [[0.0, 0.0, 10.0, 10.0]] and piece_first[1].tolist() == pytest.approx([0.9])


def test_class_aware_matching_only_pairs_equal_labels():
    labels = torch.tensor([1, 1, 2, 3])
    _, scores, _ = merge_predictions(BOXES, SCORES, labels, "nms", "iou", 0.5)
    assert scores.tolist() == pytest.approx([0.9, 0.8, 0.7, 0.6])  # C and D differ in class
    _, scores, _ = merge_predictions(BOXES, SCORES, labels, "nms", "iou", 0.5, class_agnostic=True)
    assert scores.tolist() == pytest.approx([0.9, 0.8, 0.7])
    _, scores, _ = merge_predictions(BOXES, SCORES, labels, "greedy_nmm", "ios", 0.5, class_agnostic=True)
    assert scores.tolist() == pytest.approx([0.9, 0.7])


def test_empty_and_bad_arguments():
    out = merge_predictions(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64))
    assert out[0].shape == (0, 4)
    with pytest.raises(ValueError, match="method"):
        merge_predictions(BOXES, SCORES, torch.ones(4, dtype=torch.int64), "wbf")


def test_greedy_nmm_rechecks_each_box_against_the_growing_merge_as_sahi_does():
    # at IoU 0.3 both neighbours match the kept box (1/3 each); merged with the better one first,
    # [0, 0, 15, 10], the other overlaps it by 50 / 200 = 0.25 and is dropped, not merged
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0], [-5.0, 0.0, 5.0, 10.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    out, s, _ = merge_predictions(boxes, scores, torch.ones(3, dtype=torch.int64), "greedy_nmm", "iou", 0.3)
    assert out.tolist() == [[0.0, 0.0, 15.0, 10.0]] and s.tolist() == pytest.approx([0.9])
