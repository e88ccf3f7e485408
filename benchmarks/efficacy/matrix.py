"""What the efficacy benchmark trains: one entry per remedy, each a shipped config.

Every detection entry starts from the demo Faster R-CNN (or RetinaNet) config and
changes what its config file changes: ``fragment`` is that change, which the runner gives
``detimb-sweep`` as a remedy on the demo config pointed at the dataset, so every entry has
the same data and schedule. ``claim`` is what the method's paper reports,
``metric`` the number whose direction decides whether this benchmark reproduces it, and
``kind`` whether the paper says the method raises that number or keeps it (matches the
baseline without what the method removes).
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from detimb.config import load_config, to_dict

REPO = Path(__file__).resolve().parents[2]
# the config each detector's entries change (the sweep's --config); its own entry is the sweep's baseline
# (packaged names: a sweep's plan names its config, and a clone elsewhere continues it)
BASES = {"faster_rcnn": "detimb://demo/faster_rcnn_shapes", "retinanet": "detimb://demo/retinanet_shapes"}
BASE_ENTRIES = {"faster_rcnn": "baseline", "retinanet": "retinanet_focal"}  # the entry that is each base config


@dataclass(frozen=True)
class Entry:
    name: str
    config: str
    family: str
    claim: str = ""
    metric: str = "APr"  # the number the claim is about (APr, mAP; mDice_global, Dicer_global)
    _: KW_ONLY  # (a positional ``overrides`` once landed in ``kind``: retinanet_ce trained the focal loss)
    kind: str = "raises"  # "raises" or "matches"
    overrides: tuple[str, ...] = field(default_factory=tuple)
    baseline: str = "baseline"
    builds_on: str = ""  # for a combination: the entry it adds to, reported against it as well


DETECTION = [
    Entry("baseline", "configs/demo/faster_rcnn_shapes.yaml", "baseline"),
    Entry("ohem", "configs/samplers/ohem.yaml", "sampler", "OHEM (Shrivastava 2016): hard examples raise AP", "mAP"),
    Entry("ohem_ratio", "configs/samplers/ohem_ratio.yaml", "sampler", "OHEM, 3:1 ratio mode", "mAP"),
    Entry("iou_balanced", "configs/samplers/iou_balanced.yaml", "sampler",
          "Libra R-CNN: IoU-balanced negatives raise AP", "mAP"),
    Entry("instance_balanced", "configs/samplers/instance_balanced.yaml", "sampler",
          "instance-balanced positives help objects with few proposals", "APr"),
    Entry("focal_roi", "configs/samplers/focal.yaml", "sampler", "focal loss as soft sampling in the RoI head", "APr"),
    Entry("isr_p", "configs/samplers/isr_p.yaml", "sampler", "PISA: ISR-P prime-sample weighting raises AP", "mAP"),
    Entry("balanced_l1", "configs/losses/balanced_l1.yaml", "box loss", "Libra R-CNN: balanced L1 raises AP", "mAP"),
    Entry("giou", "configs/losses/giou.yaml", "box loss", "GIoU loss (Rezatofighi 2019) raises AP", "mAP"),
    Entry("diou", "configs/losses/diou.yaml", "box loss", "DIoU loss (Zheng 2020) raises AP", "mAP"),
    Entry("ciou", "configs/losses/ciou.yaml", "box loss", "CIoU loss (Zheng 2020) raises AP", "mAP"),
    Entry("ce_inverse_freq", "configs/losses/ce_inverse_freq.yaml", "class loss",
          "inverse-frequency class weights raise rare-class AP", "APr"),
    Entry("ce_effective_num", "configs/losses/ce_effective_num.yaml", "class loss",
          "class-balanced loss (Cui 2019) raises rare-class AP", "APr"),
    Entry("ce_effective_num_instances", "configs/losses/ce_effective_num_instances.yaml", "class loss",
          "class-balanced loss, the average foreground instance at background's weight, raises rare-class AP", "APr"),
    Entry("ce_effective_num_frequent", "configs/losses/ce_effective_num_frequent.yaml", "class loss",
          "class-balanced loss, the most frequent class at background's weight, raises rare-class AP", "APr"),
    Entry("sigmoid_ce", "configs/losses/sigmoid_ce.yaml", "class loss",
          "sigmoid CE in the RoI head (detectron2's USE_SIGMOID_CE), the base of the sigmoid long-tail losses", "mAP",
          kind="matches"),
    Entry("seesaw", "configs/losses/seesaw.yaml", "class loss", "Seesaw loss (Wang 2021) raises rare-class AP", "APr"),
    Entry("eqlv2", "configs/losses/eqlv2.yaml", "class loss", "EQLv2 (Tan 2021) raises rare-class AP", "APr"),
    Entry("federated", "configs/losses/federated.yaml", "class loss",
          "federated loss (Zhou 2021) raises rare-class AP", "APr"),
    Entry("ecm", "configs/losses/ecm.yaml", "class loss",
          "effective class-margin loss (Hyun Cho and Krähenbühl 2022) raises rare-class AP", "APr"),
    Entry("carl", "configs/balancers/carl.yaml", "balancer", "PISA: CARL raises AP", "mAP"),
    Entry("guided", "configs/balancers/guided.yaml", "balancer", "sampling-free: guided loss keeps AP without sampling",
          "mAP", kind="matches"),
    Entry("panet", "configs/necks/panet.yaml", "neck", "PANet bottom-up path raises AP", "mAP"),
    Entry("bfp", "configs/necks/bfp.yaml", "neck", "Libra R-CNN: balanced feature pyramid raises AP", "mAP"),
    Entry("repeat_factor", "configs/data/repeat_factor.yaml", "data", "LVIS repeat-factor sampling raises APr", "APr"),
    Entry("class_aware", "configs/data/class_aware.yaml", "data", "class-aware sampling raises rare-class AP", "APr"),
    Entry("copy_paste", "configs/data/copy_paste.yaml", "data",
          "class-aware copy-paste (Ghiasi 2021, rare instances pasted) raises rare-class AP", "APr"),
    Entry("libra_rcnn", "configs/published/libra_rcnn.yaml", "published", "Libra R-CNN (all three) raises AP", "mAP"),
    Entry("pisa", "configs/published/pisa.yaml", "published", "PISA (ISR-N + ISR-P + CARL) raises AP", "mAP"),
    Entry("sampling_free_faster_rcnn", "configs/published/sampling_free_faster_rcnn.yaml", "published",
          "sampling-free Faster R-CNN matches or beats sampling", "mAP", kind="matches"),
    # the 400-iteration best rare-class remedy (class-aware sampling) with a published combination on top
    Entry("class_aware_libra", "configs/combined/class_aware_libra.yaml", "combined", builds_on="class_aware"),
    Entry("class_aware_sampling_free", "configs/combined/class_aware_sampling_free.yaml", "combined",
          builds_on="class_aware"),
    # the 2500-iteration one (repeat-factor sampling) with the same Libra R-CNN changes
    Entry("repeat_factor_libra", "configs/combined/repeat_factor_libra.yaml", "combined", builds_on="repeat_factor"),
    # repeat-factor sampling with the best long-tail loss at 2500 iterations (Seesaw)
    Entry("repeat_factor_seesaw", "configs/combined/repeat_factor_seesaw.yaml", "combined", builds_on="repeat_factor"),
    # repeat-factor sampling with copy-paste (both add rare instances: resampled, and pasted elsewhere)
    Entry("repeat_factor_copy_paste", "configs/combined/repeat_factor_copy_paste.yaml", "combined",
          builds_on="repeat_factor"),
    # one-stage: focal loss against plain cross-entropy on every anchor (prior-initialised)
    Entry("retinanet_focal", "configs/demo/retinanet_shapes.yaml", "one-stage",
          "RetinaNet: the focal loss beats CE on all anchors", "mAP", baseline="retinanet_ce"),
    Entry("retinanet_ce", "configs/demo/retinanet_shapes.yaml", "one-stage", "", "mAP",
          overrides=("model.retina_head.loss_cls.type=binary_cross_entropy",), baseline="retinanet_ce"),
    Entry("ghm", "configs/losses/ghm.yaml", "one-stage", "GHM-C + GHM-R (Li 2019) beat the focal loss", "mAP",
          baseline="retinanet_focal"),
    Entry("efl", "configs/losses/efl.yaml", "one-stage", "equalized focal loss (Li 2022) raises rare-class AP",
          "APr", baseline="retinanet_focal"),
    Entry("sampling_free", "configs/published/sampling_free.yaml", "one-stage",
          "sampling-free RetinaNet (no focal loss) matches focal", "mAP", kind="matches",
          baseline="retinanet_focal"),
]

SEGMENTATION = [
    Entry("seg_baseline", "configs/demo/semantic_seg_shapes.yaml", "baseline", metric="Dicer_global",
          baseline="seg_baseline"),
    Entry("seg_random_patches", "configs/segmentation/random_patches.yaml", "patches", "", "Dicer_global",
          baseline="seg_baseline"),
    Entry("seg_class_balanced_patches", "configs/segmentation/class_balanced_patches.yaml", "patches",
          "Small & Ventura: class-balanced patches raise rare-class Dice", "Dicer_global",
          baseline="seg_random_patches"),
    Entry("seg_hard_examples", "configs/segmentation/hard_examples.yaml", "patches",
          "hard example reintroduction raises Dice over class-balanced patches", "mDice_global",
          baseline="seg_class_balanced_patches"),
    Entry("seg_ohem_pixels", "configs/segmentation/ohem_pixels.yaml", "pixels", "hard pixel mining raises Dice",
          "mDice_global", baseline="seg_baseline"),
    Entry("seg_asymmetric_focal", "configs/segmentation/asymmetric_focal.yaml", "loss",
          "Li et al. 2021: asymmetric focal raises rare-class Dice", "Dicer_global", baseline="seg_baseline"),
    Entry("seg_asymmetric_large_margin", "configs/segmentation/asymmetric_large_margin.yaml", "loss",
          "Li et al. 2021: asymmetric large margin raises rare-class Dice", "Dicer_global", baseline="seg_baseline"),
    Entry("seg_asymmetric_mixup", "configs/segmentation/asymmetric_mixup.yaml", "data",
          "Li et al. 2021: asymmetric mixup raises rare-class Dice", "Dicer_global", baseline="seg_baseline"),
]


def _difference(base: DictConfig, mine: DictConfig) -> dict[str, Any]:
    """What ``mine`` changes from ``base``: typed sections entered key by key, a module slot
    (a free mapping with a ``type``) or a value taken whole where it differs."""
    out: dict[str, Any] = {}
    for key in mine:
        a, b = base.get(key), mine.get(key)
        if isinstance(a, DictConfig) and isinstance(b, DictConfig) and OmegaConf.get_type(b) is not dict:
            changed = _difference(a, b)
            if changed:
                out[key] = changed
        elif to_dict(a) != to_dict(b):
            out[key] = to_dict(b)
    return out


def model_type(entry: Entry) -> str:
    return str(load_config(REPO / entry.config, entry.overrides).model.type)


def fragment(entry: Entry) -> dict[str, Any]:
    """The entry's change to its detector's demo config (``BASES``), as a sweep remedy's
    fragment; empty for the demo config itself (the sweep's baseline)."""
    mine = load_config(REPO / entry.config, entry.overrides)
    if mine.model.type not in BASES:
        raise ValueError(f"{entry.name}: model.type {mine.model.type} has no demo config to change")
    changed = _difference(load_config(BASES[mine.model.type]), mine)
    changed.pop("work_dir", None)  # where the shipped config trains by itself; the sweep places its runs
    return changed
