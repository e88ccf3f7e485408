"""``--remedies auto``: the candidates a training set's profile calls for, each with its reason.

The profile is ``detimb-analyze``'s (``detimb.data.statistics.dataset_stats``): imbalance
ratio, rare classes (in at most ``thresholds[0]`` training images) and tail classes (under
1% of the instances), the empty-image share, the share of small boxes, and how often the
tail shares its images with the head classes. The rules, in order:

1. No long tail (ratio under 10, no rare or tail class): the long-tail remedies are left out.
2. Repeat-factor sampling for a long tail; class-aware sampling too, unless most images
   that hold a tail class also hold a head class (resampling them repeats the head with it).
3. Losses in the RoI head for a long tail: Seesaw and the effective-number weights; EQLv2
   only from 20 classes (its gradient statistics need many negatives per class); the
   federated loss only above 50 classes (with fewer its class set is every class, which
   makes it the plain sigmoid loss).
4. OHEM when over 30% of the images are empty (background dominates); Libra R-CNN when
   over 30% of the boxes are small or the images are mostly empty (scale and foreground-
   background imbalance).
5. A combination when both its parts are chosen.
6. RetinaNet: GHM and sampling-free (both address foreground-background imbalance).
7. The effective class-margin loss (RoI head) and the equalized focal loss (RetinaNet) for a
   long tail: neither has a long-tail hyperparameter to set for the data.
8. Class-aware copy-paste for a long tail (it adds rare instances to other images, where
   resampling repeats their own), and with repeat-factor sampling when both are chosen.
9. NorCal for a long tail, on the baseline and on repeat-factor sampling when it is chosen:
   post-hoc, it trains nothing, so it does not count against ``max_remedies``.
Remedies that do not fit the model are left out with that reason; past ``max_remedies``
the later ones are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from detimb.sweeps.remedies import CATALOGUE, FG_BG, LONG_TAIL, REMEDIES

LONG_TAIL_RATIO = 10.0
MIN_CLASSES_EQLV2 = 20
FEDERATED_CLASSES = 50
EMPTY_SHARE, SMALL_SHARE, SHARED_IMAGES = 0.3, 0.3, 0.5


@dataclass(frozen=True)
class Choice:
    """One remedy considered by ``auto``: chosen or not, and why."""

    name: str
    chosen: bool
    reason: str


@dataclass(frozen=True)
class Profile:
    """What the rules read from a training set's statistics."""

    num_classes: int
    imbalance_ratio: float
    rare: tuple[str, ...]
    tail: tuple[str, ...]
    head: tuple[str, ...]
    empty_share: float
    small_share: float
    tail_with_head_share: float  # of the images holding a rare or tail class, the share that hold a head class

    @property
    def long_tail(self) -> bool:
        return self.imbalance_ratio >= LONG_TAIL_RATIO or bool(self.rare) or bool(self.tail)

    @classmethod
    def from_stats(cls, stats: dict[str, Any], coco: dict[str, Any]) -> Profile:
        classes = stats["classes"]
        rare = tuple(c["name"] for c in classes if c["group"] == "rare" and c["instances"] > 0)
        tail_names = set(stats["tail_classes"]) | set(rare)
        ids = {c["name"]: c["category_id"] for c in classes}
        tail_ids = {ids[n] for n in tail_names}
        head_ids = {ids[n] for n in stats["head_classes"]} - tail_ids
        per_image: dict[int, set[int]] = {}
        for a in coco["annotations"]:
            if not a.get("iscrowd", 0):
                per_image.setdefault(a["image_id"], set()).add(a["category_id"])
        with_tail = [cats for cats in per_image.values() if cats & tail_ids]
        shared = sum(bool(cats & head_ids) for cats in with_tail) / len(with_tail) if with_tail else 0.0
        sizes = [c["sizes"] for c in classes]
        boxes = sum(s["small"] + s["medium"] + s["large"] for s in sizes)
        return cls(stats["num_classes"], float(stats["imbalance_ratio"]), rare, tuple(stats["tail_classes"]),
                   tuple(stats["head_classes"]), float(stats["empty_image_share"]),
                   sum(s["small"] for s in sizes) / boxes if boxes else 0.0, shared)


def _long_tail_reason(p: Profile) -> str:
    parts = [f"imbalance ratio {p.imbalance_ratio:.1f}"]
    if p.rare:
        parts.append(f"{len(p.rare)} rare ({', '.join(p.rare[:4])}{'...' if len(p.rare) > 4 else ''})")
    if p.tail:
        parts.append(f"{len(p.tail)} under 1% of instances")
    return ", ".join(parts)


def _rule(name: str, p: Profile) -> tuple[bool, str]:
    """Whether the profile calls for remedy ``name``, and why (fit to the model aside)."""
    r = REMEDIES[name]
    if name == "baseline":
        return True, "the reference every remedy is paired with"
    if LONG_TAIL in r.addresses and not r.parts and not p.long_tail:
        return False, f"no long tail ({_long_tail_reason(p)}; no rare or tail class)"
    if name == "repeat_factor":
        return True, f"a long tail: {_long_tail_reason(p)}"
    if name == "class_aware":
        if p.tail_with_head_share > SHARED_IMAGES:
            return False, (f"{p.tail_with_head_share:.0%} of the images with a rare or tail class also hold a head"
                           " class: sampling by class would repeat the head with them")
        return True, f"a long tail whose images seldom hold a head class ({p.tail_with_head_share:.0%})"
    if name == "copy_paste":
        return True, f"a long tail: rare instances pasted onto other images ({_long_tail_reason(p)})"
    if name == "norcal":
        return True, f"a long tail in the scores, recalibrated after training (trains nothing): {_long_tail_reason(p)}"
    if name in ("seesaw", "ce_effective_num", "ecm", "efl"):
        return True, f"a long tail in the classifier: {_long_tail_reason(p)}"
    if name == "eqlv2":
        if p.num_classes < MIN_CLASSES_EQLV2:
            return False, f"{p.num_classes} classes: EQLv2's per-class gradient statistics are for large vocabularies"
        return True, f"{p.num_classes} classes with a long tail"
    if name == "federated":
        if p.num_classes <= FEDERATED_CLASSES:
            return False, f"{p.num_classes} classes: its 50-class set is every class, the plain sigmoid loss"
        return True, f"{p.num_classes} classes: the federated set is a subset"
    if name == "ohem":
        if p.empty_share <= EMPTY_SHARE:
            return False, f"{p.empty_share:.0%} of the images are empty: background does not dominate"
        return True, f"{p.empty_share:.0%} of the images are empty: hard negatives matter"
    if name == "libra_rcnn":
        if p.small_share <= SMALL_SHARE and p.empty_share <= EMPTY_SHARE:
            return False, f"{p.small_share:.0%} small boxes and {p.empty_share:.0%} empty images"
        return True, f"{p.small_share:.0%} small boxes, {p.empty_share:.0%} empty images"
    if r.parts:
        return True, f"combines {' and '.join(r.parts)}"
    if FG_BG in r.addresses:
        return True, "dense heads see mostly background anchors"
    return False, "no rule chooses it"


def choose(profile: Profile, cfg: DictConfig, max_remedies: int) -> list[Choice]:
    """Every shipped remedy with whether ``auto`` measures it on this data and model, and why."""
    out: list[Choice] = []
    chosen: set[str] = set()
    for r in CATALOGUE:
        misfit = r.misfit(cfg)
        wanted, reason = _rule(r.name, profile)
        if misfit is not None:
            out.append(Choice(r.name, False, misfit))
            continue
        if r.parts and not all(part in chosen for part in r.parts):
            missing = [part for part in r.parts if part not in chosen]
            out.append(Choice(r.name, False, f"{', '.join(missing)} not chosen"))
            continue
        trained = chosen - {"baseline"} - {n for n in chosen if REMEDIES[n].post_hoc is not None}
        # a post-hoc remedy trains nothing, so it does not count against --max-remedies
        if wanted and r.name != "baseline" and r.post_hoc is None and len(trained) >= max_remedies:
            out.append(Choice(r.name, False, f"{reason}; but over --max-remedies {max_remedies}"))
            continue
        if wanted:
            chosen.add(r.name)
        out.append(Choice(r.name, wanted, reason))
    return out
