"""Imports run one way (docs/design.md), with no cycle, and a planted violation is caught."""

import shutil
from pathlib import Path

import pytest

from tests.architecture.graph import cycles, import_edges, violations

PACKAGE = Path(__file__).resolve().parents[2] / "detimb"


def test_imports_run_one_way_with_no_cycle():
    assert violations(PACKAGE) == []
    assert cycles(PACKAGE) == []


def test_the_graph_sees_lazy_and_relative_imports():
    edges = {(e.source, e.target) for e in import_edges(PACKAGE)}
    assert ("detimb.cli.infer", "detimb.inference.sliced") in edges  # imported inside a function (the geo extra)
    assert ("detimb.engine.trainer", "detimb.distributed") in edges  # ``from detimb import distributed``
    assert ("detimb", "detimb.api") in edges  # the root's PEP 562 hand-out, allowed by name


@pytest.fixture
def copy_of_package(tmp_path: Path) -> Path:
    root = tmp_path / "detimb"
    shutil.copytree(PACKAGE, root, ignore=shutil.ignore_patterns("__pycache__", "configs"))
    return root


def plant(root: Path, relative: str, code: str) -> None:
    path = root / relative
    path.write_text(path.read_text() + code)


def test_a_planted_lazy_upward_import_is_caught(copy_of_package):
    plant(copy_of_package, "models/priors.py", "\n\ndef planted():\n    from detimb.cli.common import run_cli\n")
    line = len((copy_of_package / "models/priors.py").read_text().splitlines())
    assert violations(copy_of_package) == [f"detimb.models.priors (line {line}) imports detimb.cli.common upward"]


def test_a_planted_sideways_import_and_a_cycle_are_caught(copy_of_package):
    plant(copy_of_package, "samplers/random.py", "\nfrom detimb.losses import CLS_LOSSES\n")
    assert any("detimb.samplers.random" in v and "sideways" in v for v in violations(copy_of_package))
    plant(copy_of_package, "errors.py", "\nfrom detimb.utils import atomic_write\n")  # utils imports errors
    assert ["detimb.errors", "detimb.utils"] in cycles(copy_of_package)


def test_a_module_on_no_floor_is_named(copy_of_package):
    (copy_of_package / "stray.py").write_text("from detimb.errors import DetimbError\n")
    assert "detimb.stray: on no floor (add it to FLOORS)" in violations(copy_of_package)
