"""YAML configs with ``_base_`` inheritance, dotted overrides and schema validation."""

from detimb.config.loader import (
    Overrides, config_from_yaml, config_to_yaml, load_config, override_items, parse_overrides, save_config,
    to_dict,
)
from detimb.config.packaged import packaged_configs, resolve_config
from detimb.config.schema import Config

__all__ = ["Config", "Overrides", "override_items", "config_from_yaml", "config_to_yaml", "load_config",
           "packaged_configs", "parse_overrides",
           "resolve_config", "save_config", "to_dict"]
