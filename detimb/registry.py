"""One small registry per module family: the names a user types in YAML -> classes."""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable, Mapping, TypeVar

from detimb.errors import ConfigError

T = TypeVar("T")


def closest(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """A ' (did you mean X?)' hint, or '' when nothing is close."""
    match = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""


class Registry:
    """Maps config names to classes (or factory functions) of one module family.

    ``build({"type": "random", "num": 256}, where="model.rpn.sampler")`` checks the
    arguments against the constructor's signature, so a typo in YAML fails at build
    time with the slot and the closest valid argument named.
    """

    def __init__(self, family: str) -> None:
        self.family = family
        self._entries: dict[str, Callable[..., Any]] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._entries:
                raise KeyError(f"{self.family} '{name}' is registered twice")
            self._entries[name] = obj  # type: ignore[assignment]
            return obj

        return add

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str, where: str = "") -> Callable[..., Any]:
        if name not in self._entries:
            at = f"{where}: " if where else ""
            raise ConfigError(
                f"{at}unknown {self.family} type '{name}'{closest(name, self.names())}; "
                f"registered: {', '.join(self.names())}"
            )
        return self._entries[name]

    def build(self, spec: Mapping[str, Any], where: str = "", **extra: Any) -> Any:
        """Build from a mapping with a ``type`` key; ``extra`` are arguments the caller supplies."""
        if "type" not in spec:
            raise ConfigError(f"{where}: a {self.family} needs a 'type' key, e.g. {{type: {self.names()[0]}}}")
        args = {k: v for k, v in spec.items() if k != "type"}
        factory = self.get(spec["type"], where)
        params = inspect.signature(factory).parameters
        takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        if not takes_kwargs:
            valid = [n for n in params if n not in extra]
            for key in args:
                if key not in params or key in extra:
                    raise ConfigError(
                        f"{where}: {self.family} '{spec['type']}' has no argument '{key}'"
                        f"{closest(key, valid)}; valid: {', '.join(valid) or '(none)'}"
                    )
        try:
            return factory(**args, **extra)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"{where}: cannot build {self.family} '{spec['type']}': {err}") from err
