"""The remedies a sweep can measure: config fragments applied on top of the user's config.

A remedy changes only what its method changes (a loss, a sampler, the image sampler, a
neck), taking the rest from the user's config (a sampler's batch size, the neck's
channels). Each names the parts of the model it touches, so a remedy for a head the model
does not have is skipped with that reason. The fragments are the shipped configs'
(``detimb/configs/``), whose docstrings cite the papers and released code:

- ``repeat_factor``: LVIS repeat-factor sampling (Gupta et al. 2019), threshold 0.1 as in
  ``configs/data/repeat_factor.yaml`` (LVIS's 0.001 repeats nothing on a set of thousands);
- ``class_aware``: class-aware image sampling (Shen et al. 2016);
- ``ce_effective_num``: class-balanced loss (Cui et al. 2019), beta 0.999;
- ``seesaw``: Seesaw (Wang et al. 2021) as mmdetection publishes it (objectness, cosine classifier);
- ``eqlv2``: EQLv2 (Tan et al. 2021), released gamma 12, mu 0.8, alpha 4;
- ``federated``: federated loss (Zhou et al. 2021), 50 classes, frequency^0.5;
- ``ohem``: OHEM (Shrivastava et al. 2016), mmdetection's quota mode;
- ``libra_rcnn``: Libra R-CNN (Pang et al. 2019): IoU-balanced negatives, balanced feature
  pyramid (non-local, level 2), balanced L1;
- ``repeat_factor_seesaw``, ``repeat_factor_libra``: the two combinations;
- RetinaNet: ``ghm`` (GHM-C and GHM-R, Li et al. 2019) and ``sampling_free`` (Chen et al. 2021);
- ``ecm``: effective class-margin loss (Hyun Cho and Krähenbühl 2022) with the cosine classifier;
- ``efl``: equalized focal loss in RetinaNet (Li et al. 2022), gamma_b 2, scale factor 8;
- ``copy_paste``: class-aware copy-paste (Ghiasi et al. 2021), up to 5 pasted instances drawn
  by repeat factor (threshold 0.1) as ``configs/data/copy_paste.yaml``, and
  ``repeat_factor_copy_paste``;
- post-hoc, training nothing: ``norcal`` (Pan et al. 2021, ``tydpan/NorCal``; the RoI head's
  foreground scores divided by the training image counts to the power gamma, background
  apart) on the baseline's runs, and ``repeat_factor_norcal`` on repeat-factor's. Each seed's
  checkpoint is scored at every gamma of ``detimb-eval --calibrate norcal``'s grid; the sweep
  keeps the one gamma with the best objective on the selection half (mean over seeds).

A remedy of the user's own is a YAML file of config keys (``detimb.sweeps.remedy_files``),
measured as a shipped one is; it is named after the file.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig

from detimb.config import to_dict
from detimb.errors import ConfigError
from detimb.registry import closest

Fragment = dict[str, Any]

# The parts of each model type a remedy may touch ("data" and "neck" are on every detector).
MODEL_PARTS: dict[str, frozenset[str]] = {
    "faster_rcnn": frozenset({"data", "neck", "rpn", "roi_head"}),
    "mask_rcnn": frozenset({"data", "neck", "rpn", "roi_head"}),
    "retinanet": frozenset({"data", "neck", "retina_head"}),
    "fcos": frozenset({"data", "neck", "fcos_head"}),
    "ssd": frozenset({"data", "ssd_head"}),
}


@dataclass(frozen=True)
class PostHoc:
    """A post-hoc remedy's calibration ``kind`` (``detimb.evaluation.calibration.GRIDS``) and
    the trained remedy (``after``) whose checkpoints it calibrates."""

    kind: str
    after: str


@dataclass(frozen=True, kw_only=True)
class Remedy:
    """A named config fragment. ``touches``: the model parts it changes; ``addresses``:
    which imbalance it is for (``long_tail``, ``foreground_background``, ``scale``);
    ``parts``: for a combination, the remedies it combines; ``post_hoc``: set for a
    calibration of another remedy's runs, which trains nothing (its fragment is that
    remedy's)."""

    name: str
    summary: str
    touches: frozenset[str]
    addresses: frozenset[str]
    fragment: Callable[[DictConfig], Fragment]
    parts: tuple[str, ...] = field(default_factory=tuple)
    post_hoc: PostHoc | None = None
    own: bool = False  # the user's, from a file: ``auto`` never picks it

    def misfit(self, cfg: DictConfig) -> str | None:
        """Why this remedy does not fit ``cfg``'s model, or None."""
        parts = MODEL_PARTS.get(cfg.model.type)
        if parts is None:
            return f"model.type {cfg.model.type} is not a detector the sweep measures"
        missing = sorted(self.touches - parts)
        if missing:
            return f"model.type {cfg.model.type} has no model.{missing[0]}"
        return None


def _roi_sampler_size(cfg: DictConfig) -> dict[str, Any]:
    """The user's RoI sampler batch (num, pos_fraction), torchvision's 512 / 0.25 without one."""
    spec = to_dict(cfg.model.roi_head.sampler) or {}
    return {"num": spec.get("num", 512), "pos_fraction": spec.get("pos_fraction", 0.25)}


def _merge(*fragments: Fragment) -> Fragment:
    out: Fragment = {}
    for fragment in fragments:
        for key, value in fragment.items():
            if isinstance(value, dict) and isinstance(out.get(key), dict) and "type" not in value:
                out[key] = _merge(out[key], value)
            else:
                out[key] = value
    return out


def _repeat_factor(cfg: DictConfig) -> Fragment:
    return {"data": {"train": {"sampler": {"type": "repeat_factor", "threshold": 0.1, "sqrt": True}}}}


def _class_aware(cfg: DictConfig) -> Fragment:
    return {"data": {"train": {"sampler": {"type": "class_aware"}}}}


def _copy_paste(cfg: DictConfig) -> Fragment:
    return {"data": {"train": {"copy_paste": {"enabled": True, "max_pasted": 6, "repeat_threshold": 0.1,
                                              "sqrt": True, "bboxes_occluded_thr": 10.0, "mask_occluded_thr": 300}}}}


def _roi(**slots: Any) -> Fragment:
    return {"model": {"roi_head": slots}}


def _seesaw(cfg: DictConfig) -> Fragment:
    return _roi(loss_cls={"type": "seesaw", "p": 0.8, "q": 2.0, "objectness": True},
                cls_predictor={"type": "normed_linear", "temperature": 20.0})


def _libra(cfg: DictConfig) -> Fragment:
    neck = to_dict(cfg.model.neck)
    base = neck.get("base", "fpn") if neck["type"] == "bfp" else neck["type"]
    kept = {k: neck[k] for k in ("out_channels", "extra_blocks", "levels") if k in neck}
    return _merge({"model": {"neck": {"type": "bfp", "base": base, "refine": "non_local", "refine_level": 2, **kept}}},
                  _roi(sampler={"type": "iou_balanced", **_roi_sampler_size(cfg), "num_bins": 3, "floor_thr": -1,
                                "floor_fraction": 0.0},
                       loss_bbox={"type": "balanced_l1", "alpha": 0.5, "gamma": 1.5, "beta": 1.0}))


def _retina(**slots: Any) -> Fragment:
    return {"model": {"retina_head": slots}}


LONG_TAIL, FG_BG, SCALE = "long_tail", "foreground_background", "scale"
DATA, ROI, NECK, RETINA = frozenset({"data"}), frozenset({"roi_head"}), frozenset({"neck"}), frozenset({"retina_head"})

CATALOGUE: tuple[Remedy, ...] = (
    Remedy(name="baseline", summary="the user's config unchanged: what every remedy is paired with",
           touches=frozenset(), addresses=frozenset(), fragment=lambda cfg: {}),
    Remedy(name="repeat_factor", summary="LVIS repeat-factor image sampling (threshold 0.1)", touches=DATA,
           addresses=frozenset({LONG_TAIL}), fragment=_repeat_factor),
    Remedy(name="class_aware", summary="class-aware image sampling: a class uniformly, then an image holding it",
           touches=DATA, addresses=frozenset({LONG_TAIL}), fragment=_class_aware),
    Remedy(name="seesaw", summary="Seesaw loss with objectness and cosine classifier (mmdetection's)", touches=ROI,
           addresses=frozenset({LONG_TAIL}), fragment=_seesaw),
    Remedy(name="ce_effective_num", summary="cross-entropy weighted by the effective number of samples (beta 0.999)",
           touches=ROI, addresses=frozenset({LONG_TAIL}),
           fragment=lambda cfg: _roi(loss_cls={"type": "cross_entropy", "class_weight": "effective_num",
                                               "beta": 0.999})),
    Remedy(name="eqlv2", summary="EQLv2 gradient-guided sigmoid loss (released gamma 12, mu 0.8, alpha 4)",
           touches=ROI, addresses=frozenset({LONG_TAIL}),
           fragment=lambda cfg: _roi(loss_cls={"type": "eqlv2", "gamma": 12.0, "mu": 0.8, "alpha": 4.0})),
    Remedy(name="federated", summary="federated sigmoid loss over 50 classes drawn by frequency^0.5", touches=ROI,
           addresses=frozenset({LONG_TAIL}),
           fragment=lambda cfg: _roi(loss_cls={"type": "federated", "num_classes": 50, "freq_weight_power": 0.5})),
    Remedy(name="ohem", summary="OHEM in the RoI head (quota mode, the user's batch)", touches=ROI,
           addresses=frozenset({FG_BG}),
           fragment=lambda cfg: _roi(sampler={"type": "ohem", "mode": "quota", **_roi_sampler_size(cfg)})),
    Remedy(name="libra_rcnn", summary="Libra R-CNN: IoU-balanced negatives, balanced pyramid, balanced L1",
           touches=ROI | NECK, addresses=frozenset({FG_BG, SCALE}), fragment=_libra),
    Remedy(name="repeat_factor_seesaw", summary="repeat-factor sampling with Seesaw", touches=DATA | ROI,
           addresses=frozenset({LONG_TAIL}), fragment=lambda cfg: _merge(_repeat_factor(cfg), _seesaw(cfg)),
           parts=("repeat_factor", "seesaw")),
    Remedy(name="repeat_factor_libra", summary="repeat-factor sampling with Libra R-CNN", touches=DATA | ROI | NECK,
           addresses=frozenset({LONG_TAIL, FG_BG, SCALE}),
           fragment=lambda cfg: _merge(_repeat_factor(cfg), _libra(cfg)), parts=("repeat_factor", "libra_rcnn")),
    Remedy(name="ghm", summary="GHM-C and GHM-R in RetinaNet's head", touches=RETINA, addresses=frozenset({FG_BG}),
           fragment=lambda cfg: _retina(loss_cls={"type": "ghm_c", "bins": 30, "momentum": 0.75},
                                        loss_bbox={"type": "ghm_r", "mu": 0.02, "bins": 10, "momentum": 0.7,
                                                   "loss_weight": 10.0})),
    Remedy(name="sampling_free", summary="sampling-free RetinaNet: guided loss, optimal bias, adaptive threshold",
           touches=RETINA, addresses=frozenset({FG_BG}),
           fragment=lambda cfg: _retina(sampler={"type": "all"}, loss_cls={"type": "binary_cross_entropy"},
                                        balancer={"type": "guided", "mode": "per_iter"}, optimal_prior=True,
                                        adaptive_score_thresh=True)),
    Remedy(name="ecm", summary="effective class-margin sigmoid loss (margins from the counts), cosine classifier",
           touches=ROI, addresses=frozenset({LONG_TAIL}),
           fragment=lambda cfg: _roi(loss_cls={"type": "ecm", "fg_bg_ratio": 6.3313},
                                     cls_predictor={"type": "normed_linear", "temperature": 20.0})),
    Remedy(name="efl", summary="equalized focal loss in RetinaNet's head (gamma_b 2, scale factor 8)", touches=RETINA,
           addresses=frozenset({LONG_TAIL}),
           fragment=lambda cfg: _retina(loss_cls={"type": "efl", "gamma_b": 2.0, "scale_factor": 8.0, "alpha": 0.25},
                                        sampler={"type": "all"})),
    Remedy(name="copy_paste", summary="class-aware copy-paste: up to 5 instances per image, drawn by repeat factor",
           touches=DATA, addresses=frozenset({LONG_TAIL}), fragment=_copy_paste),
    Remedy(name="repeat_factor_copy_paste", summary="repeat-factor sampling with class-aware copy-paste",
           touches=DATA, addresses=frozenset({LONG_TAIL}),
           fragment=lambda cfg: _merge(_repeat_factor(cfg), _copy_paste(cfg)), parts=("repeat_factor", "copy_paste")),
    Remedy(name="norcal", summary="NorCal on the baseline's checkpoints: scores / training image count^gamma",
           touches=ROI, addresses=frozenset({LONG_TAIL}), fragment=lambda cfg: {},
           post_hoc=PostHoc("norcal", "baseline")),
    Remedy(name="repeat_factor_norcal", summary="NorCal on repeat-factor sampling's checkpoints", touches=DATA | ROI,
           addresses=frozenset({LONG_TAIL}), fragment=_repeat_factor, parts=("repeat_factor", "norcal"),
           post_hoc=PostHoc("norcal", "repeat_factor")),
)
REMEDIES: dict[str, Remedy] = {r.name: r for r in CATALOGUE}


def own_remedy(name: str, fragment: Fragment) -> Remedy:
    """The user's remedy ``name``: ``fragment`` as it is, on any config. It touches the model
    parts it names (``model.retina_head`` on Faster R-CNN is a misfit) and ``data``."""
    model = fragment.get("model", {})
    heads = frozenset().union(*MODEL_PARTS.values())
    touches = frozenset(k for k in model if k in heads) | (DATA if "data" in fragment else frozenset())
    return Remedy(name=name, summary="your remedy: " + ", ".join(flatten(fragment)), touches=touches,
                  addresses=frozenset(), fragment=lambda cfg: fragment, own=True)


def remedy(name: str, own: Mapping[str, Fragment] | None = None) -> Remedy:
    """The user's remedy ``name`` (its fragment in ``own``), else the shipped one, else a
    named error listing them, the closest first."""
    if own and name in own:
        return own_remedy(name, own[name])
    if name not in REMEDIES:
        ordered = sorted(REMEDIES, key=lambda n: (-difflib.SequenceMatcher(None, name, n).ratio(), n))
        raise ConfigError(f"--remedies: unknown remedy {name!r}{closest(name, list(REMEDIES))}; valid (closest"
                          f" first): {', '.join(ordered)}; or a .yaml file of config keys, your own remedy")
    return REMEDIES[name]


def flatten(fragment: Fragment, prefix: str = "") -> list[str]:
    """A fragment as ``key=value`` overrides (values as JSON, which YAML reads back). A slot
    (a mapping with a ``type``) stays one value, so it replaces the user's slot whole when
    its type changes, as a config layer would."""
    items: list[str] = []
    for key, value in fragment.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and "type" not in value:
            items += flatten(value, f"{path}.")
        else:
            items.append(f"{path}={json.dumps(value)}")
    return items
