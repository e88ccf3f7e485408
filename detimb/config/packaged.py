"""The configs that ship inside the package (``detimb/configs/``; the repository's
``configs/`` is a link to the same files), found by file path or by packaged name.

A ``--config`` value is a file path, or ``detimb://demo/faster_rcnn_shapes`` (a packaged
name), or a plain name such as ``demo/faster_rcnn_shapes`` that is no existing file but
names a packaged one. ``_base_`` entries resolve relative to the file that names them, so a
packaged config's bases resolve inside the package. This is mmdetection's ``mim`` and
detectron2's ``model_zoo.get_config_file`` without a download.
"""

from __future__ import annotations

from pathlib import Path

from detimb.errors import ConfigError
from detimb.registry import closest

SCHEME = "detimb://"
PACKAGED_DIR = Path(__file__).resolve().parents[1] / "configs"


def describe_config(name: str) -> str:
    """The first comment line of a packaged config (what it is), or ''."""
    for line in (PACKAGED_DIR / f"{name}.yaml").read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
        if line.strip():
            break
    return ""


def packaged_configs() -> list[str]:
    """The packaged config names (``demo/faster_rcnn_shapes``, ...), bases left out."""
    return sorted(p.relative_to(PACKAGED_DIR).with_suffix("").as_posix() for p in PACKAGED_DIR.rglob("*.yaml")
                  if "_base_" not in p.relative_to(PACKAGED_DIR).parts)


def resolve_config(name: str | Path) -> Path:
    """The file a ``--config`` value names (see the module docstring)."""
    text = str(name)
    packaged = text.startswith(SCHEME)
    if not packaged and Path(text).is_file():
        return Path(text)
    if not packaged and Path(text).is_dir():
        raise ConfigError(f"{text}: is a folder, not a config file. Fix: name the .yaml file")
    key = text[len(SCHEME):] if packaged else text
    key = key.removesuffix(".yaml").removeprefix("configs/")
    candidate = PACKAGED_DIR / f"{key}.yaml"
    if candidate.is_file():
        return candidate
    where = "no packaged config" if packaged else f"config file not found: {text}, and no packaged config"
    raise ConfigError(f"{where} is named '{key}'{closest(key, packaged_configs())}; list the packaged configs with:"
                      " detimb-train --list-configs")
