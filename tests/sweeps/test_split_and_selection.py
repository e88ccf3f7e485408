"""The selection/confirmation split, and what ``--remedies auto`` picks on hand-made profiles."""

from __future__ import annotations

import pytest

from detimb.config import load_config
from detimb.data.statistics import dataset_stats
from detimb.errors import ConfigError
from detimb.sweeps.remedies import CATALOGUE, REMEDIES, flatten, remedy
from detimb.sweeps.selection import Profile, choose
from detimb.sweeps.split import split_images
from tests.conftest import write_config


def coco_with(images_per_class: dict[int, int], empty: int, shared: int = 0) -> dict:
    """Images holding one class each (``shared`` more holding classes 1 and 2), and empty ones."""
    images, anns = [], []
    for cid, n in images_per_class.items():
        for _ in range(n):
            images.append({"id": len(images) + 1})
            anns.append({"id": len(anns) + 1, "image_id": len(images), "category_id": cid, "bbox": [0, 0, 5, 5]})
    for _ in range(shared):
        images.append({"id": len(images) + 1})
        for cid in (1, 2):
            anns.append({"id": len(anns) + 1, "image_id": len(images), "category_id": cid, "bbox": [0, 0, 5, 5]})
    images += [{"id": len(images) + k + 1} for k in range(empty)]
    return {"images": images, "annotations": anns,
            "categories": [{"id": c, "name": f"c{c}"} for c in images_per_class]}


@pytest.mark.parametrize("seed", range(5))
def test_the_split_is_disjoint_stratified_and_seeded(seed):
    coco = coco_with({1: 40, 2: 7, 3: 2, 4: 1}, empty=9, shared=5)
    split = split_images(coco, seed)
    sel, con = set(split.selection), set(split.confirmation)
    assert not sel & con and sel | con == {im["id"] for im in coco["images"]}
    assert abs(len(sel) - len(con)) <= 1
    for cid in (1, 2, 3):  # every class with two or more images is in both halves
        holders = {a["image_id"] for a in coco["annotations"] if a["category_id"] == cid}
        assert holders & sel and holders & con
    assert split.one_half_only == ("c4",)  # one image: named, in one half only
    assert split == split_images(coco, seed)


def profile(**kw) -> Profile:
    base = dict(num_classes=6, imbalance_ratio=100.0, rare=("crescent",), tail=("crescent",), head=("square",),
                empty_share=0.0, small_share=0.0, tail_with_head_share=0.0)
    return Profile(**{**base, **kw})


def chosen(p: Profile, model: str = "faster_rcnn", max_remedies: int = 6, tmp_path=None, tiny_shapes=None) -> dict:
    cfg = load_config(write_config(tmp_path, tiny_shapes, model))
    return {c.name: c for c in choose(p, cfg, max_remedies)}


def test_auto_on_a_long_tail_with_few_classes(tmp_path, tiny_shapes):
    picks = chosen(profile(), tmp_path=tmp_path, tiny_shapes=tiny_shapes)
    assert [n for n, c in picks.items() if c.chosen] == ["baseline", "repeat_factor", "class_aware", "seesaw",
                                                         "ce_effective_num", "repeat_factor_seesaw", "ecm", "norcal",
                                                         "repeat_factor_norcal"]
    # post-hoc remedies train nothing: past the cap of 6 trained ones, they are still measured
    assert "trains nothing" in picks["norcal"].reason
    assert "no model.retina_head" in picks["efl"].reason and picks["ecm"].reason.startswith("a long tail")
    assert "rare instances pasted" in picks["copy_paste"].reason
    assert "over --max-remedies 6" in picks["copy_paste"].reason
    assert "6 classes" in picks["eqlv2"].reason and "every class" in picks["federated"].reason
    assert "no model.retina_head" in picks["ghm"].reason and "not chosen" in picks["repeat_factor_libra"].reason


def test_auto_without_a_long_tail_measures_foreground_background_remedies(tmp_path, tiny_shapes):
    picks = chosen(profile(imbalance_ratio=2.0, rare=(), tail=(), empty_share=0.6), tmp_path=tmp_path,
                   tiny_shapes=tiny_shapes)
    assert [n for n, c in picks.items() if c.chosen] == ["baseline", "ohem", "libra_rcnn"]
    assert picks["seesaw"].reason.startswith("no long tail (imbalance ratio 2.0")


def test_auto_leaves_class_aware_out_when_the_tail_shares_images_with_the_head(tmp_path, tiny_shapes):
    picks = chosen(profile(tail_with_head_share=0.8, num_classes=60), tmp_path=tmp_path, tiny_shapes=tiny_shapes,
                   max_remedies=3)
    assert not picks["class_aware"].chosen and "80% of the images" in picks["class_aware"].reason
    assert [n for n, c in picks.items() if c.chosen] == ["baseline", "repeat_factor", "seesaw", "ce_effective_num",
                                                         "norcal", "repeat_factor_norcal"]
    assert "over --max-remedies 3" in picks["eqlv2"].reason  # 60 classes: the rule wants it, the cap does not


def test_auto_for_retinanet(tmp_path, tiny_shapes):
    picks = chosen(profile(), "retinanet", tmp_path=tmp_path, tiny_shapes=tiny_shapes)
    assert [n for n, c in picks.items() if c.chosen] == ["baseline", "repeat_factor", "class_aware", "ghm",
                                                         "sampling_free", "efl", "copy_paste"]
    assert "over --max-remedies 6" in picks["repeat_factor_copy_paste"].reason
    assert picks["seesaw"].reason == "model.type retinanet has no model.roi_head"


def test_profile_from_a_training_set():
    coco = coco_with({1: 50, 2: 30, 3: 3}, empty=17, shared=4)
    p = Profile.from_stats(dataset_stats(coco), coco)
    assert p.rare == ("c3",) and p.empty_share == pytest.approx(17 / 104) and p.long_tail
    assert p.tail_with_head_share == 0.0  # c3's images hold nothing else


@pytest.mark.parametrize("item", CATALOGUE, ids=lambda r: r.name)
def test_every_remedy_resolves_on_a_config_it_fits(item, tmp_path, tiny_shapes):
    model = "retinanet" if "retina_head" in item.touches else "faster_rcnn"
    cfg = load_config(write_config(tmp_path, tiny_shapes, model))
    assert item.misfit(cfg) is None
    load_config(write_config(tmp_path, tiny_shapes, model), flatten(item.fragment(cfg)))


def test_an_unknown_remedy_lists_the_names_closest_first():
    with pytest.raises(ConfigError, match=r"unknown remedy 'seesw' \(did you mean 'seesaw'\?\); valid \(closest"
                                          r" first\): seesaw, "):
        remedy("seesw")
    assert set(REMEDIES) >= {"baseline", "repeat_factor", "seesaw", "repeat_factor_seesaw"}
