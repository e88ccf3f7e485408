"""Remedies of the user's own: ``--remedies my_sampler.yaml`` measures a YAML file of config
keys applied on top of the user's config, as a shipped remedy's fragment is::

    # configs of my own: hard negatives with a larger RoI batch
    model:
      roi_head:
        sampler: {type: ohem, mode: quota, num: 1024, pos_fraction: 0.25}

The remedy is named after the file (``my_sampler``); a slot given with a ``type`` replaces
the user's slot whole, as in a config layer. The file changes what the remedy changes and
nothing the sweep holds fixed to pair the runs (the data it evaluates on, the schedule, the
seed, the evaluation, the detector); ``_base_`` is refused (name each file as a remedy).
The fragment's content is kept in the sweep's plan: a resumed sweep whose file changed is
refused.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from detimb.config.loader import check_layer, read_yaml_mapping
from detimb.errors import ConfigError
from detimb.sweeps.remedies import REMEDIES, Fragment

SUFFIXES = (".yaml", ".yml")
# what the sweep sets or holds equal across its runs (a prefix covers the keys below it)
SWEEP_HELD = ("work_dir", "model.type", "model.arch", "model.num_classes", "data.train.ann_file",
              "data.train.img_dir", "data.val", "train.seed", "train.schedule", "train.eval_interval",
              "train.checkpoint_interval", "evaluation")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def is_remedy_file(name: str) -> bool:
    return name.lower().endswith(SUFFIXES)


def _leaves(node: dict[str, Any], prefix: str = "") -> list[str]:
    """The dotted key of every value of a nested mapping (an empty mapping is a value)."""
    out: list[str] = []
    for key, value in node.items():
        out += _leaves(value, f"{prefix}{key}.") if isinstance(value, dict) and value else [f"{prefix}{key}"]
    return out


def _held_key(fragment: Fragment) -> str | None:
    """The first key of ``fragment`` that the sweep holds, or None."""
    for key in _leaves(fragment):
        if any(key == held or key.startswith(held + ".") for held in SWEEP_HELD):
            return key
    return None


def read_remedy_file(path: str | Path) -> tuple[str, Fragment]:
    """The remedy's name (the file's stem) and its fragment, or a ConfigError naming the file
    and the fix."""
    path = Path(path)
    name = path.stem
    fragment = read_yaml_mapping(path)
    if "_base_" in fragment:
        raise ConfigError(f"--remedies {path}: a remedy file cannot have _base_ (it is applied on top of your config,"
                          " not built on another). Fix: write its keys out, or give each file as its own remedy")
    if not fragment:
        raise ConfigError(f"--remedies {path}: the file sets nothing, so it would train the baseline again. Fix: give"
                          " the config keys the remedy changes")
    if not NAME.match(name) or name in REMEDIES or name == "auto":
        taken = "a shipped remedy's name" if name in REMEDIES or name == "auto" else "not a plain name"
        raise ConfigError(f"--remedies {path}: the remedy is named after the file, and {name!r} is {taken}. Fix: rename"
                          " the file (letters, digits, _ . -)")
    check_layer(fragment, str(path))
    held = _held_key(fragment)
    if held is not None:
        raise ConfigError(f"--remedies {path}: sets {held}, which the sweep holds equal in every run (data it"
                          " evaluates on, schedule, seed, evaluation, detector) so that runs pair. Fix: remove it; set"
                          " your data and model in --config, the schedule with --iters")
    return name, fragment


def read_remedies(names: Sequence[str | os.PathLike[str]]) -> tuple[list[str], dict[str, Fragment]]:
    """``--remedies`` as names (a file's: its stem) and the fragments of the files among them."""
    out: list[str] = []
    own: dict[str, Fragment] = {}
    sources: dict[str, str] = {}
    for item in map(os.fspath, names):
        if not is_remedy_file(item):
            out.append(item)
            continue
        name, fragment = read_remedy_file(item)
        if name in own and own[name] != fragment:
            raise ConfigError(f"--remedies: {sources[name]} and {item} are both named {name!r} (a remedy is named after"
                              " its file). Fix: rename one")
        own[name], sources[name] = fragment, item
        out.append(name)
    return out, own
