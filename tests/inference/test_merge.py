"""Merging tile predictions: NMS and greedy NMM by IoU and IoS, worked out by hand."""

import pytest
import torch

from detimb.inference.merge import box_ios, merge_predictions

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


# --- the grid-blocked merge equals the exhaustive one ------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from detimb.inference.merge import candidate_pairs, merge_predictions_exhaustive  # noqa: E402

SETTINGS = [(m, k) for m in ("nms", "greedy_nmm") for k in ("iou", "ios")]


def assert_same(boxes, scores, labels, threshold, class_agnostic=False):
    for method, match in SETTINGS:
        a = merge_predictions(boxes, scores, labels, method, match, threshold, class_agnostic)
        b = merge_predictions_exhaustive(boxes, scores, labels, method, match, threshold, class_agnostic)
        assert all(torch.equal(x, y) for x, y in zip(a, b)), (method, match, threshold)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 500), st.floats(0, 500), st.floats(0.5, 80), st.floats(0.5, 80),
                          st.integers(0, 9), st.integers(1, 3)), min_size=1, max_size=60),
       st.sampled_from([0.0, 0.1, 0.5, 0.8]), st.booleans())
def test_blocked_merge_equals_exhaustive_on_random_scenes(rows, threshold, class_agnostic):
    t = torch.tensor([r[:4] for r in rows], dtype=torch.float32)
    boxes = torch.cat([t[:, :2], t[:, :2] + t[:, 2:]], dim=1)
    scores = torch.tensor([r[4] / 10 for r in rows])  # coarse: ties are common
    labels = torch.tensor([r[5] for r in rows])
    assert_same(boxes, scores, labels, threshold, class_agnostic)


def test_blocked_merge_across_tile_borders_by_hand():
    # a 100 px object cut by a tile border at x = 512 (two pieces) and seen whole in the
    # next tile; a far one; one box spanning many grid cells; and a degenerate box
    boxes = torch.tensor([[462.0, 10, 512, 60], [512, 10, 562, 60], [462, 10, 562, 60], [2000, 2000, 2010, 2010],
                          [0, 0, 3000, 30], [700, 700, 700, 705]])
    scores = torch.tensor([0.6, 0.7, 0.9, 0.8, 0.3, 0.5])
    labels = torch.tensor([1, 1, 1, 1, 1, 1])
    boxes_m, scores_m, _ = merge_predictions(boxes, scores, labels, "greedy_nmm", "ios", 0.5)
    # the whole box absorbs both pieces (IoS 1 each); the long thin box overlaps it by 100 x 20,
    # IoS 2000 / 5000 = 0.4 (the smaller box is the whole one): it stays a detection of its own
    assert scores_m.tolist() == pytest.approx([0.9, 0.8, 0.5, 0.3])
    assert boxes_m[0].tolist() == [462.0, 10, 562, 60]
    assert_same(boxes, scores, labels, 0.5)
    # every intersecting pair is a candidate
    pairs = {tuple(p) for p in candidate_pairs(boxes.double().numpy()).tolist()}
    assert {(0, 1), (0, 2), (1, 2), (0, 4), (1, 4), (2, 4)} <= pairs


def test_blocked_merge_refuses_non_finite_boxes():
    with pytest.raises(ValueError, match="NaN or infinite"):
        merge_predictions(torch.tensor([[0.0, 0, float("nan"), 1]]), torch.ones(1), torch.ones(1, dtype=torch.long))


def test_members_name_the_input_boxes_each_kept_box_holds():
    from detimb.inference.merge import merge_groups

    # input out of score order: the SAHI case above, shuffled; the dropped box belongs to no group
    boxes = torch.tensor([[-5.0, 0.0, 5.0, 10.0], [0.0, 0.0, 10.0, 10.0], [50.0, 0, 60, 10], [5.0, 0.0, 15.0, 10.0]])
    scores = torch.tensor([0.7, 0.9, 0.1, 0.8])
    out = merge_groups(boxes, scores, torch.ones(4, dtype=torch.int64), "greedy_nmm", "iou", 0.3)
    assert [out.members(m).tolist() for m in range(2)] == [[1, 3], [2]]
    nms = merge_groups(boxes, scores, torch.ones(4, dtype=torch.int64), "nms", "iou", 0.3)
    assert [nms.members(m).tolist() for m in range(2)] == [[1], [2]]
    nms_ios = merge_groups(boxes, scores, torch.ones(4, dtype=torch.int64), "nms", "ios", 0.3)
    assert [nms_ios.members(m).tolist() for m in range(2)] == [[1], [2]]
    empty = merge_groups(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64))
    assert len(empty.member_index) == 0 and empty.member_ptr.tolist() == [0]
