import pytest

from detimb.errors import ConfigError
from detimb.registry import Registry


def make_registry():
    reg = Registry("widget")

    @reg.register("round_widget")
    class Round:
        def __init__(self, radius: float = 1.0, colour: str = "red") -> None:
            self.radius, self.colour = radius, colour

    return reg, Round


def test_build_passes_arguments():
    reg, cls = make_registry()
    obj = reg.build({"type": "round_widget", "radius": 2.0}, "slot")
    assert isinstance(obj, cls) and obj.radius == 2.0 and obj.colour == "red"


def test_unknown_type_names_slot_and_closest():
    reg, _ = make_registry()
    with pytest.raises(ConfigError, match=r"model.x: unknown widget type 'rond_widget' \(did you mean 'round_widget'"):
        reg.build({"type": "rond_widget"}, "model.x")


def test_unknown_argument_names_closest():
    reg, _ = make_registry()
    with pytest.raises(ConfigError, match=r"no argument 'radus' \(did you mean 'radius'"):
        reg.build({"type": "round_widget", "radus": 3}, "model.x")


def test_missing_type_and_double_registration():
    reg, cls = make_registry()
    with pytest.raises(ConfigError, match="needs a 'type'"):
        reg.build({"radius": 1}, "model.x")
    with pytest.raises(KeyError):
        reg.register("round_widget")(cls)
