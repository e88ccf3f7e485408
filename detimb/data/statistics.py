"""Class and box statistics of a COCO dataset: what the imbalance looks like before training."""

from __future__ import annotations

import math
from collections import Counter
from itertools import combinations
from typing import Any

import numpy as np

from detimb.utils import atomic_write

SMALL, MEDIUM = 32**2, 96**2  # COCO's area ranges


def _area(ann: dict[str, Any]) -> float:
    return float(ann.get("area") or ann["bbox"][2] * ann["bbox"][3])


GROUP_BY = ("images", "instances")


def _group_note(classes: list[dict[str, Any]], thresholds: tuple[int, int], num_images: int) -> str | None:
    """What to say when image counts put classes with many instances in the rare group (a few
    large scenes): their group says little about how much there is to learn from."""
    misplaced = [c for c in classes if c["group"] == "rare" and c["instances"] > thresholds[1]]
    if not misplaced:
        return None
    names = ", ".join(f"{c['name']} ({c['instances']} instances in {c['images']} images)" for c in misplaced[:3])
    return (f"{len(misplaced)} class(es) are 'rare' by image count although they have more than {thresholds[1]}"
            f" instances: {names}; with {num_images} images, LVIS's image-count groups say little here. Fix:"
            " group by instances (--group-by instances)")


def dataset_stats(coco: dict[str, Any], thresholds: tuple[int, int] = (10, 100), group_by: str = "images"
                  ) -> dict[str, Any]:
    """Per class: instances, images, share of instances, frequency group (``group_by``
    images, LVIS's rule, or instances: rare <= thresholds[0] < common <= thresholds[1] <
    frequent; ``group_note`` says when image counts mislead), COCO size counts
    (small < 32^2 <= medium < 96^2 <= large, by the annotation's area) and box size
    (sqrt of area: min, median, max). Overall: imbalance ratio (most / fewest instances
    among classes present), head classes (the most frequent that together hold half the
    instances), tail classes (under 1% of instances), empty-image share, and the
    co-occurrence matrix (images containing both classes). Crowd annotations excluded."""
    anns = [a for a in coco["annotations"] if not a.get("iscrowd", 0)]
    cats = sorted(coco["categories"], key=lambda c: c["id"])
    instances = Counter(a["category_id"] for a in anns)
    per_image: dict[int, set[int]] = {img["id"]: set() for img in coco["images"]}
    for a in anns:
        per_image.setdefault(a["image_id"], set()).add(a["category_id"])
    images = Counter(c for cls in per_image.values() for c in cls)
    total = sum(instances.values())
    classes = []
    for cat in cats:
        cid = cat["id"]
        areas = [_area(a) for a in anns if a["category_id"] == cid]
        sides = np.sqrt(areas) if areas else np.zeros(0)
        n_img = images.get(cid, 0)
        counted = n_img if group_by == "images" else instances.get(cid, 0)
        classes.append({
            "category_id": cid, "name": cat["name"], "instances": instances.get(cid, 0), "images": n_img,
            "share": instances.get(cid, 0) / total if total else 0.0,
            "group": "rare" if counted <= thresholds[0] else "common" if counted <= thresholds[1] else "frequent",
            "sizes": {"small": sum(a < SMALL for a in areas), "medium": sum(SMALL <= a < MEDIUM for a in areas),
                      "large": sum(a >= MEDIUM for a in areas)},
            "box_side_px": {"min": float(sides.min()) if sides.size else None,
                            "median": float(np.median(sides)) if sides.size else None,
                            "max": float(sides.max()) if sides.size else None},
        })
    present = [c["instances"] for c in classes if c["instances"] > 0]
    by_freq = sorted(classes, key=lambda c: -c["instances"])
    head, covered = [], 0
    for c in by_freq:
        if covered >= total / 2:
            break
        head.append(c["name"])
        covered += c["instances"]
    index = {c["id"]: i for i, c in enumerate(cats)}
    co = np.zeros((len(cats), len(cats)), dtype=np.int64)
    for cls in per_image.values():
        for c in cls:
            co[index[c], index[c]] += 1
        for a, b in combinations(sorted(cls), 2):
            co[index[a], index[b]] += 1
            co[index[b], index[a]] += 1
    return {
        "num_images": len(per_image), "num_instances": total, "num_classes": len(cats),
        "empty_image_share": sum(not cls for cls in per_image.values()) / max(1, len(per_image)),
        "imbalance_ratio": max(present) / min(present) if present else math.nan,
        "head_classes": head, "tail_classes": [c["name"] for c in classes if c["share"] < 0.01],
        "frequency_thresholds": list(thresholds), "group_by": group_by, "classes": classes,
        "group_note": _group_note(classes, thresholds, len(per_image)) if group_by == "images" else None,
        "cooccurrence": {"names": [c["name"] for c in cats], "images": co.tolist()},
    }


def box_sides(coco: dict[str, Any]) -> dict[str, list[float]]:
    """sqrt(area) of every (non-crowd) box, per category name."""
    names = {c["id"]: c["name"] for c in coco["categories"]}
    out: dict[str, list[float]] = {n: [] for n in names.values()}
    for a in coco["annotations"]:
        if not a.get("iscrowd", 0):
            out[names[a["category_id"]]].append(math.sqrt(_area(a)))
    return out


def write_plots(stats: dict[str, Any], out_dir: str, log: bool = False, compare: dict[str, Any] | None = None,
                labels: tuple[str, str] = ("dataset", "compared"), sides: dict[str, list[float]] | None = None
                ) -> list[str]:
    """class_histogram.png, box_sizes.png, cooccurrence.png, with ``sides`` (see ``box_sides``)
    box_side_histogram.png, and with ``compare`` comparison.png; returns the names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def save(fig: Any, name: str) -> str:
        fig.tight_layout()
        atomic_write(f"{out_dir}/{name}", lambda tmp: fig.savefig(tmp, format="png", dpi=100))
        plt.close(fig)
        return name

    cls = sorted(stats["classes"], key=lambda c: -c["instances"])
    written = [save(_class_histogram(plt, stats, cls, log), "class_histogram.png"),
               save(_box_sizes(plt, cls), "box_sizes.png")]
    if sides is not None:
        written.append(save(_side_histogram(plt, sides, [c["name"] for c in cls]), "box_side_histogram.png"))
    written.append(save(_cooccurrence(plt, stats, [c["name"] for c in cls]), "cooccurrence.png"))
    if compare is not None:
        written.append(save(_comparison(plt, cls, compare, labels, log), "comparison.png"))
    return written


def _class_histogram(plt: Any, stats: dict[str, Any], cls: list[dict[str, Any]], log: bool) -> Any:
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(cls)), 4))
    ax.bar([c["name"] for c in cls], [c["instances"] for c in cls], color="#1f77b4")
    ax.set_ylabel("instances" + (" (log)" if log else ""))
    if log:
        ax.set_yscale("log")
    ax.set_title(f"{stats['num_instances']} instances, imbalance ratio {stats['imbalance_ratio']:.1f}")
    ax.tick_params(axis="x", rotation=45)
    return fig


def _box_sizes(plt: Any, cls: list[dict[str, Any]]) -> Any:
    names = [c["name"] for c in cls]
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(cls)), 4))
    bottom = np.zeros(len(cls))
    for size, colour in (("small", "#9ecae1"), ("medium", "#4292c6"), ("large", "#08519c")):
        values = np.array([c["sizes"][size] for c in cls], dtype=float)
        ax.bar(names, values, bottom=bottom, label=size, color=colour)
        bottom += values
    ax.set_ylabel("instances")
    ax.set_title("COCO size ranges per class")
    ax.legend()
    ax.tick_params(axis="x", rotation=45)
    return fig


def _side_histogram(plt: Any, sides: dict[str, list[float]], names: list[str]) -> Any:
    fig, ax = plt.subplots(figsize=(7, 4))
    values = [v for vs in sides.values() for v in vs]
    if values:
        bins = np.geomspace(max(1.0, min(values)), max(values) + 1, 30)
        for name in names:
            if sides.get(name):
                ax.hist(sides[name], bins=bins, histtype="step", label=name, linewidth=1.5)
        ax.set_xscale("log")
        for edge in (32, 96):
            ax.axvline(edge, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("box side, sqrt(area) in pixels (dotted: COCO small/medium/large)")
    ax.set_ylabel("instances")
    ax.legend(fontsize=7)
    return fig


NUMBERED_CELLS = 30  # classes up to which each co-occurrence cell is labelled with its count


def _cooccurrence(plt: Any, stats: dict[str, Any], order: list[str]) -> Any:
    """The co-occurrence matrix with its classes in ``order`` (the histogram's), each cell
    numbered while they fit."""
    names = stats["cooccurrence"]["names"]
    index = [names.index(name) for name in order]
    co = np.array(stats["cooccurrence"]["images"])[np.ix_(index, index)]
    fig, ax = plt.subplots(figsize=(max(5, 0.5 * len(co) + 2), max(4, 0.5 * len(co) + 1)))
    im = ax.imshow(co, cmap="viridis")
    ax.set_xticks(range(len(co)), order, rotation=45)
    ax.set_yticks(range(len(co)), order)
    if len(co) <= NUMBERED_CELLS:
        top = co.max() if co.size else 0
        for (i, j), value in np.ndenumerate(co):
            ax.text(j, i, str(value), ha="center", va="center", fontsize=7,
                    color="black" if value > top / 2 else "white")
    ax.set_title("images containing both classes")
    fig.colorbar(im)
    return fig


def _comparison(plt: Any, cls: list[dict[str, Any]], compare: dict[str, Any], labels: tuple[str, str],
                log: bool) -> Any:
    names = [c["name"] for c in cls]
    other = {c["name"]: c["instances"] for c in compare["classes"]}
    all_names = names + [n for n in other if n not in names]
    x = np.arange(len(all_names))
    mine = {c["name"]: c["instances"] for c in cls}
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(all_names)), 4))
    ax.bar(x - 0.2, [mine.get(n, 0) for n in all_names], 0.4, label=labels[0])
    ax.bar(x + 0.2, [other.get(n, 0) for n in all_names], 0.4, label=labels[1])
    ax.set_xticks(x, all_names, rotation=45)
    if log:
        ax.set_yscale("log")
    ax.set_ylabel("instances")
    ax.legend()
    return fig
