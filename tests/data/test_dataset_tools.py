"""Class merging and dataset statistics against counts done by hand."""

import json

import numpy as np
import pytest

from detimb.cli import analyze, merge_classes
from detimb.data.class_merge import ClassMapping, merge_classes as merge
from detimb.data.statistics import box_sides, dataset_stats
from detimb.errors import DatasetError


def tiny_coco():
    """4 images: car x2 + truck; car; bike (area 40^2); none. Category ids 3, 5, 9."""
    anns = [
        (1, 1, 3, [0, 0, 10, 10], 100), (2, 1, 3, [20, 0, 10, 10], 100), (3, 1, 5, [0, 20, 40, 40], 1600),
        (4, 2, 3, [0, 0, 5, 5], 25), (5, 3, 9, [0, 0, 40, 40], 1600), (6, 3, 3, [50, 50, 100, 100], 10000),
    ]
    return {
        "images": [{"id": i, "file_name": f"{i}.png", "width": 200, "height": 200} for i in (1, 2, 3, 4)],
        "annotations": [{"id": a, "image_id": im, "category_id": c, "bbox": b, "area": ar, "iscrowd": 0}
                        for a, im, c, b, ar in anns],
        "categories": [{"id": 3, "name": "car"}, {"id": 5, "name": "truck"}, {"id": 9, "name": "bike"}],
    }


def test_stats_by_hand():
    s = dataset_stats(tiny_coco(), (1, 2))
    by = {c["name"]: c for c in s["classes"]}
    assert (by["car"]["instances"], by["car"]["images"]) == (4, 3)
    assert (by["truck"]["instances"], by["bike"]["images"]) == (1, 1)
    assert by["car"]["group"] == "frequent" and by["truck"]["group"] == "rare"  # images: 3 > 2; 1 <= 1
    assert by["car"]["sizes"] == {"small": 3, "medium": 0, "large": 1}  # areas 100, 100, 25 < 32^2; 10000
    assert by["truck"]["sizes"] == {"small": 0, "medium": 1, "large": 0}  # 1600 in [32^2, 96^2)
    assert by["car"]["box_side_px"]["median"] == pytest.approx(10.0)
    assert s["empty_image_share"] == 0.25 and s["imbalance_ratio"] == 4.0
    assert s["head_classes"] == ["car"]  # 4 of 6 instances: more than half
    assert box_sides(tiny_coco())["car"] == pytest.approx([10.0, 10.0, 5.0, 100.0])
    co = np.array(s["cooccurrence"]["images"])  # order car, truck, bike
    assert co.tolist() == [[3, 1, 1], [1, 1, 0], [1, 0, 1]]


def test_analyze_writes_report(tmp_path):
    src = tmp_path / "a.json"
    src.write_text(json.dumps(tiny_coco()))
    assert analyze.main(["--coco", str(src), "--out", str(tmp_path / "r"), "--compare", str(src), "--log"]) == 0
    saved = json.loads((tmp_path / "r" / "stats.json").read_text())
    assert saved["num_instances"] == 6 and saved["compare"]["num_instances"] == 6
    for png in ("class_histogram.png", "box_sizes.png", "box_side_histogram.png", "cooccurrence.png",
                "comparison.png"):
        assert (tmp_path / "r" / png).read_bytes()[:4] == b"\x89PNG"


def test_merge_rewrites_ids_consistently_and_counts_round_trip():
    coco = tiny_coco()
    merged, counts = merge(coco, ClassMapping({"car": "vehicle", 5: "vehicle", "bike": "cycle"}, frozenset()))
    assert merged["categories"] == [{"id": 1, "name": "vehicle", "supercategory": ""},
                                    {"id": 2, "name": "cycle", "supercategory": ""}]
    assert [a["category_id"] for a in merged["annotations"]] == [1, 1, 1, 1, 2, 1]
    assert counts["before"] == {"car": 4, "truck": 1, "bike": 1} and counts["after"] == {"vehicle": 5, "cycle": 1}
    assert sum(counts["before"].values()) == sum(counts["after"].values())
    assert coco == tiny_coco()  # the input is not modified


def test_merge_drops_and_keeps_images():
    merged, counts = merge(tiny_coco(), ClassMapping({"car": "car", "truck": "car"}, frozenset({"bike"})))
    assert counts["after"] == {"car": 5} and len(merged["images"]) == 4
    assert all(a["id"] != 5 for a in merged["annotations"])


@pytest.mark.parametrize("mapping,message", [
    (ClassMapping({"car": "vehicle"}, frozenset()), r"'truck', 'bike' are neither mapped nor dropped"),
    (ClassMapping({"car": "x", "lorry": "x"}, frozenset()), r"'lorry' is not a category"),
    (ClassMapping({"car": "x", "truck": "x", "bike": "y"}, frozenset({"bike"})), "both mapped and dropped"),
    (ClassMapping({}, frozenset({"car", "truck", "bike"})), "drops every category, so no class would be left"),
])
def test_merge_refuses_incomplete_or_wrong_mappings(mapping, message):
    with pytest.raises(DatasetError, match=message):
        merge(tiny_coco(), mapping)


def test_merge_tool_writes_nothing_when_refusing(tmp_path, capsys):
    src = tmp_path / "a.json"
    src.write_text(json.dumps(tiny_coco()))
    (tmp_path / "map.yaml").write_text("map: {car: vehicle}\n")
    out = tmp_path / "merged.json"
    assert merge_classes.main(["--coco", str(src), "--map", str(tmp_path / "map.yaml"), "--out", str(out)]) == 2
    assert not out.exists() and "nothing was written" in capsys.readouterr().err
    (tmp_path / "map.yaml").write_text("map: {car: vehicle, truck: vehicle}\ndrop: [bike]\n")
    assert merge_classes.main(["--coco", str(src), "--map", str(tmp_path / "map.yaml"), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["categories"][0]["name"] == "vehicle"
    assert merge_classes.main(["--coco", str(src), "--map", str(tmp_path / "map.yaml"), "--out", str(src)]) == 2


def _scenes(instances: int) -> dict:
    """Two large scenes: 'tree' has ``instances`` boxes in them, 'hut' one."""
    anns = [{"id": i + 1, "image_id": 1 + i % 2, "category_id": 1, "bbox": [i % 900, 5, 10, 10], "area": 100,
             "iscrowd": 0} for i in range(instances)]
    anns.append({"id": instances + 1, "image_id": 1, "category_id": 2, "bbox": [0, 0, 20, 20], "area": 400,
                 "iscrowd": 0})
    return {"images": [{"id": i, "file_name": f"{i}.tif", "width": 1000, "height": 1000} for i in (1, 2)],
            "annotations": anns, "categories": [{"id": 1, "name": "tree"}, {"id": 2, "name": "hut"}]}


def test_image_count_groups_of_a_few_large_scenes_are_called_out_and_instances_can_group():
    by_images = dataset_stats(_scenes(914))
    assert {c["name"]: c["group"] for c in by_images["classes"]} == {"tree": "rare", "hut": "rare"}
    assert "tree (914 instances in 2 images)" in by_images["group_note"]
    assert "--group-by instances" in by_images["group_note"]
    by_instances = dataset_stats(_scenes(914), group_by="instances")
    assert {c["name"]: c["group"] for c in by_instances["classes"]} == {"tree": "frequent", "hut": "rare"}
    assert by_instances["group_note"] is None and by_instances["group_by"] == "instances"
    assert dataset_stats(_scenes(50))["group_note"] is None  # no class past the common threshold


def test_the_cooccurrence_plot_follows_the_histograms_order_and_numbers_its_cells():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from detimb.data.statistics import _cooccurrence

    stats = dataset_stats(tiny_coco(), (1, 2))  # matrix order car, truck, bike
    fig = _cooccurrence(plt, stats, ["car", "bike", "truck"])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["car", "bike", "truck"]
    assert [t.get_text() for t in ax.texts] == ["3", "1", "1", "1", "1", "0", "1", "0", "1"]
    plt.close(fig)
