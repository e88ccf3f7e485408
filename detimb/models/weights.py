"""Loading detector weights from local files: torchvision's state dicts or detimb checkpoints.

One loader for ``model.weights``, ``--load-from`` and fine-tuning. Keys are matched by
name (detimb's detectors keep torchvision's module names); a tensor whose shape depends on
the class count (the box predictor, the mask predictor, RetinaNet's classification layer)
keeps the model's own initialisation, torchvision's, when the file has another class
count; anything else that does not fit is an error that names the first offending keys
and what the file looks like. Every load returns a ``LoadReport`` to print.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
import torch
from torch import Tensor, nn

from detimb.errors import CheckpointError
from detimb.utils import read_torch_file
from detimb.models.backbones import adapt_input_weight
from detimb.models.heads.objective import HeadObjective

# Parameters whose shape follows the number of classes, by module prefix.
# (A key under these prefixes is re-initialised only if its shape differs: SSDlite's depthwise
# convs there keep theirs.)
CLASS_DEPENDENT = ("roi_heads.box_predictor.", "roi_heads.mask_predictor.mask_fcn_logits.",
                   "head.classification_head.cls_logits.", "head.classification_head.module_list.")

# detimb's module names before they became torchvision's (checkpoints written before then).
LEGACY_PREFIXES = (("backbone.body.body.", "backbone.body."), ("backbone.neck.base.fpn.", "backbone.fpn."),
                   ("backbone.neck.base.", "backbone.fpn."), ("backbone.neck.fpn.", "backbone.fpn."),
                   ("backbone.neck.extra.", "backbone.fpn.extra_blocks."), ("backbone.neck.", "backbone.fpn."))


@dataclass
class LoadReport:
    """What a load did, key by key."""

    source: str
    loaded: list[str] = field(default_factory=list)
    reinitialised: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    renamed: int = 0

    def summary(self) -> str:
        lines = [f"weights from {self.source}: {len(self.loaded)} tensors loaded"]
        if self.renamed:
            lines.append(f"  {self.renamed} keys of detimb's earlier layout renamed to torchvision's")
        if self.adapted:
            lines.append(f"  {len(self.adapted)} first-convolution weights adapted to the input channels (RGB kept,"
                         " extra bands their mean): " + ", ".join(self.adapted))
        if self.reinitialised:
            lines.append(f"  {len(self.reinitialised)} re-initialised (their shape depends on the class count): "
                         + ", ".join(self.reinitialised))
        if self.restarted:
            lines.append(f"  {len(self.restarted)} running statistics of the losses restarted (the file's are for"
                         " another class count): " + _few(self.restarted))
        if self.missing:
            lines.append(f"  {len(self.missing)} missing from the file, kept at their initial values: "
                         + _few(self.missing))
        if self.unexpected:
            lines.append(f"  {len(self.unexpected)} in the file but not in this model, ignored: "
                         + _few(self.unexpected))
        return "\n".join(lines)


def _few(keys: list[str], n: int = 6) -> str:
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def state_dict_of(obj: Any, source: str) -> dict[str, Tensor]:
    """The model state in a loaded file: a detimb checkpoint's ``model``, or a plain state
    dict (``torch.save(model.state_dict())``, torchvision's cached ``*.pth``)."""
    state = obj.get("model") if isinstance(obj, dict) and isinstance(obj.get("model"), dict) else obj
    if not isinstance(state, dict) or not state or not all(isinstance(k, str) and isinstance(v, Tensor)
                                                           for k, v in state.items()):
        kind = sorted(state)[:5] if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{source}: not model weights (expected a state dict of tensors or a detimb checkpoint;"
                              f" found {kind}). Fix: give torch.save(model.state_dict()) or a detimb checkpoint")
    return state


def refuse_non_finite(state: dict[str, Tensor], source: str | Path) -> None:
    """A CheckpointError naming the tensors that hold NaN or infinity (a diverged run's
    checkpoint evaluates to mAP 0 without a word otherwise)."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{source}: {len(bad)} tensors hold NaN or infinite values ({_few(bad, 3)}): the run that"
                              " wrote it diverged. Fix: use an earlier checkpoint (iter_N.pth, best.pth), and lower"
                              " the learning rate or set train.grad_clip for the next run")


def rename_legacy(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], int]:
    """``state`` with detimb's earlier backbone/neck names turned into torchvision's, and how many."""
    out, renamed = {}, 0
    for key, value in state.items():
        for old, new in LEGACY_PREFIXES:
            if key.startswith(old):
                key, renamed = new + key[len(old):], renamed + 1
                break
        out[key] = value
    return out, renamed


def describe(keys: list[str]) -> str:
    """What architecture a state dict's keys look like, for error messages."""
    has = lambda part: any(part in k for k in keys)  # noqa: E731
    if has("classification_head") and has("regression_head"):
        kind = "RetinaNet"
    elif has("mask_predictor"):
        kind = "Mask R-CNN"
    elif has("roi_heads.box_predictor"):
        kind = "Faster R-CNN"
    elif has("classifier.") and not has("rpn."):
        kind = "an image classifier (MobileNet / VGG)"
    elif any(k.startswith("fc.") for k in keys) and not has("rpn."):
        kind = "an image classifier (ResNet): give it as model.backbone.weights"
    else:
        kind = "an unknown model"
    blocks = {k.split(".")[k.split(".").index("layer3") + 1] for k in keys if ".layer3." in f".{k}"}
    depth = {6: "ResNet-50", 23: "ResNet-101", 36: "ResNet-152"}.get(len(blocks), "")
    if not depth and any("layer3.5." in k for k in keys):
        depth = "ResNet-50 or deeper"
    elif not depth and any("layer3.1." in k for k in keys):
        depth = "ResNet-18/34"
    v2 = " (v2 heads)" if has("roi_heads.box_head.0.0.") or has("head.classification_head.conv.0.1.") else ""
    return f"{kind}{' on ' + depth if depth and 'classifier' not in kind else ''}{v2}"


def _first_conv_of_other_input(key: str, saved: Tensor, here: Tensor) -> bool:
    """A backbone convolution that differs only in its input channels, from a 3-channel file:
    the first convolution of a model that reads other than RGB (``model.in_channels``)."""
    return (key.startswith("backbone.body.") and saved.dim() == 4 and here.dim() == 4 and saved.shape[1] == 3
            and saved.shape[0] == here.shape[0] and saved.shape[2:] == here.shape[2:])


def objective_buffers(model: nn.Module) -> set[str]:
    """The state-dict keys of the buffers inside the heads' objectives: the running
    statistics of their losses and balancers (Seesaw's counts, EQLv2's gradients, GHM's
    densities), training state that a fine-tune keeps where it fits and restarts where not."""
    return {f"{name}.{buffer}" for name, module in model.named_modules() if isinstance(module, HeadObjective)
            for buffer, _ in module.named_buffers()}


def load_weights_file(model: nn.Module, path: str | Path, strict_classes: bool = False) -> LoadReport:
    """``load_weights`` from a file, read with ``weights_only=True`` (its failures named);
    for a detimb checkpoint that does not fit, the error adds how its config differs."""
    obj = read_torch_file(path)
    try:
        return load_weights(model, obj, path, strict_classes)
    except CheckpointError as err:
        if isinstance(obj, dict) and isinstance(obj.get("config"), str):
            saved = (yaml.safe_load(obj["config"]) or {}).get("model", {})
            part = lambda k: (saved.get(k) or {}).get("type") if isinstance(saved.get(k), dict) else None  # noqa: E731
            raise CheckpointError(f"{err} It is a detimb checkpoint of model.type {saved.get('type')!r}, backbone"
                                  f" {part('backbone')!r}, neck {part('neck')!r}") from err
        raise


def load_weights(model: nn.Module, obj: Any, source: str | Path, strict_classes: bool = False) -> LoadReport:
    """Load ``obj`` (a loaded file: state dict or detimb checkpoint) into ``model``.

    Matching keys of equal shape are loaded; class-dependent keys of another shape keep the
    model's initialisation (an error with ``strict_classes``); a shape mismatch elsewhere,
    or a file that shares almost nothing with the model, is a ``CheckpointError``."""
    source = str(source)
    state, renamed = rename_legacy(state_dict_of(obj, source))
    refuse_non_finite(state, source)
    own = model.state_dict()
    statistics = objective_buffers(model)
    report = LoadReport(source, renamed=renamed)
    fitting: dict[str, Tensor] = {}
    mismatched: list[str] = []
    for key, value in state.items():
        if key not in own:
            if not key.endswith("num_batches_tracked"):  # BatchNorm bookkeeping, absent from FrozenBatchNorm2d
                report.unexpected.append(key)
        elif own[key].shape == value.shape:
            fitting[key] = value
        elif key in statistics:  # a loss's running statistics: sized on first use, or for other classes
            if own[key].numel() == 0:
                fitting[key] = value  # the loss takes the saved shape as it loads (adopt_saved_shapes)
            else:
                report.restarted.append(key)
        elif key.startswith(CLASS_DEPENDENT):
            report.reinitialised.append(key)
        elif _first_conv_of_other_input(key, value, own[key]):
            fitting[key] = adapt_input_weight(value, own[key].shape[1])
            report.adapted.append(key)
        else:
            mismatched.append(f"{key} {tuple(value.shape)} in the file, {tuple(own[key].shape)} here")
    if mismatched or len(fitting) < 0.5 * len(own):
        detail = "; ".join(mismatched[:3]) if mismatched else (
            f"only {len(fitting)} of this model's {len(own)} tensors are in the file; e.g. the file has "
            + _few(report.unexpected, 3) + " and lacks " + _few([k for k in own if k not in state], 3))
        raise CheckpointError(f"{source}: the weights do not fit this model: {detail}. The file looks like"
                              f" {describe(list(state))}. Fix: choose the matching model.arch (or backbone and"
                              " neck), or give the file that fits this config")
    if report.reinitialised and strict_classes:
        raise CheckpointError(f"{source}: the file has another class count ({_few(report.reinitialised, 2)} differ)"
                              " and model.weights_strict is set. Fix: unset it to re-initialise the class layers,"
                              " or train on the file's classes")
    report.missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    report.loaded = sorted(fitting)
    model.load_state_dict({**own, **fitting})
    return report


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A detimb checkpoint (a dict with ``model`` and ``label_map``), or a CheckpointError
    that says what is wrong with the file: missing, empty, torn, foreign, or holding code."""
    state = read_torch_file(path, map_location)
    if not isinstance(state, dict) or "model" not in state or "label_map" not in state:
        keys = sorted(state)[:5] if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path}: not a detimb checkpoint (no 'model' and 'label_map'; found {keys}). Fix: give"
                              " a last.pth/best.pth/iter_N.pth written by detimb training")
    return state


MODEL_KEYS_THAT_SHAPE = ("type", "backbone", "neck", "anchors", "rpn", "roi_head", "retina_head", "head")


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): node}


def config_differences(state: dict[str, Any], model_cfg: dict[str, Any], num_classes: int) -> list[str]:
    """What differs between a checkpoint's stored model config and ``model_cfg`` (and classes)."""
    diffs = []
    saved_classes = len(state["label_map"].get("names", [])) + 1 if isinstance(state.get("label_map"), dict) else None
    if saved_classes is not None and saved_classes != num_classes:
        diffs.append(f"classes: {saved_classes - 1} in the checkpoint, {num_classes - 1} here")
    saved = (yaml.safe_load(state["config"]) or {}).get("model", {}) if isinstance(state.get("config"), str) else {}
    a = {k: v for k, v in _flat({k: saved.get(k) for k in MODEL_KEYS_THAT_SHAPE}).items()}
    b = {k: v for k, v in _flat({k: model_cfg.get(k) for k in MODEL_KEYS_THAT_SHAPE}).items()}
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            diffs.append(f"model.{key}: {a.get(key)!r} in the checkpoint, {b.get(key)!r} here")
    return diffs


def load_model_state(model: nn.Module, state: dict[str, Any], model_cfg: dict[str, Any], num_classes: int,
                     source: str | Path) -> None:
    """Load a detimb checkpoint's weights exactly (resume, inference); a mismatch is an error
    that lists how the checkpoint's config differs from this one (not a state-dict dump).
    Checkpoints of detimb's earlier backbone/neck layout are renamed to the current one."""
    refuse_non_finite(state["model"], source)
    try:
        model.load_state_dict(rename_legacy(state["model"])[0])
    except RuntimeError as err:
        diffs = config_differences(state, model_cfg, num_classes)
        detail = "; ".join(diffs[:8]) if diffs else str(err).splitlines()[0][:200]
        raise CheckpointError(f"{source}: the checkpoint was trained with another model config and does not fit this"
                              f" one: {detail}. Fix: use the config it was trained with (stored in the checkpoint and"
                              " in its run folder's config.yaml)") from err
