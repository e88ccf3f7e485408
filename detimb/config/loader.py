"""Load YAML configs with ``_base_`` inheritance and dotted overrides, validated by the schema.

Layers merge in order: every ``_base_`` file (recursively, in list order), then the file
itself, then command-line overrides. A file reached twice (two bases sharing the demo
config) is merged once, where it is first reached: merging it again would undo what the
first base changed. Each layer is merged into the schema on its own, so
an unknown key or a wrong type is reported against the file (or override) that wrote it.
A module slot (a mapping with a ``type``) whose ``type`` changes is replaced whole, not
merged: switching ``sampler: {type: random, num: 512}`` to ``{type: focal}`` must not
carry ``num`` over.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from detimb.config.checks import check_values
from detimb.config.packaged import PACKAGED_DIR, SCHEME, resolve_config
from detimb.config.schema import Config
from detimb.errors import ConfigError
from detimb.registry import closest
from detimb.utils import atomic_write_text


# A config has a few hundred values; YAML aliases can make a short file expand to billions
# (nested anchors, the "billion laughs"), which merging would then copy out. Refused first.
MAX_EXPANDED_VALUES = 1_000_000


def expanded_size(data: Any, limit: int = MAX_EXPANDED_VALUES) -> int:
    """How many values ``data`` holds once every alias is written out (shared containers
    counted at each place they appear), computed once per distinct container; counting
    stops past ``limit``."""
    sizes: dict[int, int] = {}

    def size(node: Any) -> int:
        if not isinstance(node, (dict, list)):
            return 1
        if id(node) not in sizes:
            children = node.values() if isinstance(node, dict) else node
            sizes[id(node)] = min(limit + 1, 1 + sum(size(child) for child in children))
        return sizes[id(node)]

    return size(data)


def load_bounded_yaml(text: str, source: str) -> Any:
    """``yaml.safe_load`` of ``text``, refused by name when its aliases expand beyond
    ``MAX_EXPANDED_VALUES`` values."""
    data = yaml.safe_load(text)
    if expanded_size(data) > MAX_EXPANDED_VALUES:
        raise ConfigError(f"{source}: its YAML aliases expand to more than {MAX_EXPANDED_VALUES:,} values (nested"
                          " anchors: an alias bomb?); a config holds a few hundred. Fix: write the values out, or use"
                          " _base_ to share settings")
    return data


def read_yaml_mapping(path: Path) -> dict[str, Any]:
    """A YAML file's top-level mapping (empty file: {}), or a ConfigError naming the file and the fix."""
    try:
        data = load_bounded_yaml(path.read_text(encoding="utf-8"), str(path))
    except FileNotFoundError as err:
        raise ConfigError(f"config file not found: {path}") from err
    except IsADirectoryError as err:
        raise ConfigError(f"{path}: is a folder, not a config file. Fix: name the .yaml file") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}: {err.reason}); a config is a YAML text file."
                          " Fix: save it as UTF-8, or name the right file") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping at the top level, got {type(data).__name__}")
    return data


def _layers(path: Path, seen: tuple[Path, ...] = ()) -> list[tuple[str, dict[str, Any]]]:
    """(source name, content) for the file and its bases, bases first."""
    path = path.resolve()
    if path in seen:
        chain = " -> ".join(str(p) for p in (*seen, path))
        raise ConfigError(f"circular _base_ inheritance: {chain}")
    data = read_yaml_mapping(path)
    bases = data.pop("_base_", [])
    if isinstance(bases, str):
        bases = [bases]
    if not isinstance(bases, list):
        raise ConfigError(f"{path}: _base_ must be a file name or a list of file names")
    layers: list[tuple[str, dict[str, Any]]] = []
    for base in bases:
        # a packaged base by name (detimb://demo/faster_rcnn_shapes), else a file beside this one
        target = resolve_config(base) if str(base).startswith(SCHEME) else path.parent / base
        layers += _layers(target, (*seen, path))
    layers.append((str(path), data))
    return layers


def _once(layers: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """Each file's first layer only, order kept."""
    kept: dict[str, dict[str, Any]] = {}
    for source, data in layers:
        kept.setdefault(source, data)
    return list(kept.items())


def _clear_changed_slots(cfg: DictConfig, data: dict[str, Any]) -> None:
    """Empty each slot (an untyped mapping with a ``type``) whose ``type`` ``data`` changes."""
    for key, value in data.items():
        if not isinstance(value, dict) or key not in cfg:
            continue
        old = cfg.get(key)
        if not isinstance(old, DictConfig):
            continue
        if OmegaConf.get_type(old) is dict and "type" in value and value["type"] != old.get("type", value["type"]):
            cfg[key] = {}
        else:
            _clear_changed_slots(old, value)


def _merge_layer(cfg: DictConfig, source: str, data: dict[str, Any]) -> DictConfig:
    _clear_changed_slots(cfg, data)
    try:
        return OmegaConf.merge(cfg, data)
    except ConfigKeyError as err:
        raise ConfigError(_unknown_key_message(cfg, source, err)) from err
    except ValidationError as err:
        key = err.full_key or "(top level)"
        raise ConfigError(f"{source}: wrong type for '{key}': {str(err.msg).splitlines()[0]}") from err
    except OmegaConfBaseException as err:
        raise ConfigError(f"{source}: {err}") from err


def check_layer(data: dict[str, Any], source: str) -> None:
    """Refuse ``data`` (a partial config) when a key is not in the schema or a value has the
    wrong type, naming ``source``."""
    _merge_layer(OmegaConf.structured(Config), source, data)


def dotted_keys(node: Any, prefix: str = "") -> list[str]:
    """Every key of a config as a full dotted path (``train.schedule.max_iters``), into
    typed sections but not into module slots (their keys are the module's arguments)."""
    out: list[str] = []
    if not isinstance(node, DictConfig) or OmegaConf.get_type(node) is dict:
        return out
    for key in node:
        path = f"{prefix}{key}"
        out.append(path)
        out += dotted_keys(node._get_node(key), f"{path}.")  # noqa: SLF001 (no value resolution)
    return out


def _unknown_key_message(cfg: DictConfig, source: str, err: ConfigKeyError) -> str:
    full_key = str(err.full_key or err.key)
    parent_path, _, _leaf = full_key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_path) if parent_path else cfg
    valid = list(parent.keys()) if isinstance(parent, DictConfig) else []
    return (
        f"{source}: unknown key '{full_key}'{closest(full_key, dotted_keys(cfg))}; "
        f"valid keys here: {', '.join(str(k) for k in valid)}"
    )


def parse_overrides(overrides: Iterable[str]) -> dict[str, Any]:
    """``["a.b=3", "x.y=[1,2]"]`` -> nested dict; values are parsed as YAML."""
    nested: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--cfg-options: '{item}' is not of the form key.path=value")
        key, raw = item.split("=", 1)
        try:
            value = load_bounded_yaml(raw, f"--cfg-options {key}") if raw != "" else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"--cfg-options: cannot parse the value of '{key}': {err}") from err
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--cfg-options: '{key}' sets a key inside a value set by another option")
        node[parts[-1]] = value
    return nested


ARCH_DIR = PACKAGED_DIR / "_base_" / "arch"


def arch_names() -> list[str]:
    """The torchvision architectures ``model.arch`` may name."""
    return sorted(p.stem for p in ARCH_DIR.glob("*.yaml"))


def _arch_layers(layers: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """The layers of the architecture the config names (the last ``model.arch`` set), which
    go under every other layer."""
    arch = None
    for source, data in layers:
        model = data.get("model")
        if isinstance(model, dict) and model.get("arch") is not None:
            arch, named_in = model["arch"], source
    if arch is None:
        return []
    if not isinstance(arch, str) or arch not in arch_names():
        raise ConfigError(f"{named_in}: model.arch: unknown architecture {arch!r}{closest(str(arch), arch_names())};"
                          f" known: {', '.join(arch_names())}")
    return _layers(ARCH_DIR / f"{arch}.yaml")


def load_config(path: str | os.PathLike[str], overrides: Iterable[str] = ()) -> DictConfig:
    """Load, merge and validate a config (a file path or a packaged name, see
    ``detimb.config.packaged``); returns a read-only DictConfig of the schema. A
    ``model.arch`` brings that torchvision architecture's settings in under the rest."""
    cfg = OmegaConf.structured(Config)
    layers = _once(_layers(resolve_config(path)))
    override_data = parse_overrides(overrides)
    if override_data:
        layers.append(("--cfg-options", override_data))
    layers = _once(_arch_layers(layers) + layers)
    for source, data in layers:
        cfg = _merge_layer(cfg, source, data)
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"{path}: these keys must be set: {', '.join(missing)}")
    check_values(cfg, layers)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def config_from_yaml(text: str, source: str, overrides: Iterable[str] = ()) -> DictConfig:
    """A resolved config written by ``config_to_yaml`` (a checkpoint's, a run folder's),
    with ``overrides`` (``key=value``) on top, validated as ``load_config`` validates a file;
    ``source`` names it in errors."""
    try:
        data = load_bounded_yaml(text, source) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: the stored config is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the stored config is not a mapping")
    layers = [(source, data)]
    override_data = parse_overrides(overrides)
    if override_data:
        layers.append(("--cfg-options", override_data))
    cfg = OmegaConf.structured(Config)
    for name, layer in layers:
        cfg = _merge_layer(cfg, name, layer)
    check_values(cfg, layers)
    OmegaConf.set_readonly(cfg, True)
    return cfg


Overrides = Union[Sequence[str], Mapping[str, Any]]


def override_items(overrides: Overrides) -> list[str]:
    """``key=value`` strings from either form the API takes: a sequence of them (as the
    command line's ``--cfg-options``), or a mapping of dotted keys to values
    (``{"train.schedule.max_iters": 100}``; values written as YAML)."""
    if isinstance(overrides, Mapping):
        return [f"{key}={value if isinstance(value, str) else json.dumps(value)}" for key, value in overrides.items()]
    if isinstance(overrides, str) or not isinstance(overrides, Iterable):
        raise ConfigError(f"overrides: give a list of 'key=value' strings or a dict, not {overrides!r}")
    return [str(item) for item in overrides]


def config_to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def save_config(cfg: DictConfig, path: str | os.PathLike[str]) -> None:
    """Write the resolved config atomically; ``load_config`` on it rebuilds the same run."""
    atomic_write_text(path, config_to_yaml(cfg))


def to_dict(node: Any) -> Any:
    """A plain-Python copy of a config node (for ``Registry.build``)."""
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)
    return node
