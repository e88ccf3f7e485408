"""The package as a user installs it: a wheel in a fresh venv, run from outside the repository."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow  # a subprocess or two ranks each: seconds per test

OPTIONAL = ("rasterio", "shapely", "pyogrio", "tensorboard")


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A venv holding only the built wheel; the dev venv's packages (torch, ...) reach it
    through a .pth file, as ``--system-site-packages`` would for a system install."""
    root = tmp_path_factory.mktemp("install")
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                 str(root / "dist"), str(REPO)], root)
    assert built.returncode == 0, built.stderr
    wheel = next((root / "dist").glob("detimb-*.whl"))
    venv = root / "venv"
    assert run([sys.executable, "-m", "venv", "--without-pip", str(venv)], root).returncode == 0
    python = venv / "bin" / "python"
    target = run([str(python), "-c", "import site; print(site.getsitepackages()[0])"], root).stdout.strip()
    Path(target, "dev-packages.pth").write_text(site.getsitepackages()[0] + "\n")
    done = run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)], root)
    assert done.returncode == 0, done.stderr
    return venv


def test_packaged_config_trains_outside_the_repo(installed, tmp_path):
    bin_dir = installed / "bin"
    where = run([str(bin_dir / "python"), "-c", "import detimb; print(detimb.__file__)"], tmp_path)
    assert str(REPO) not in where.stdout and "site-packages" in where.stdout, where
    listed = run([str(bin_dir / "detimb-train"), "--list-configs"], tmp_path)
    assert any(line.split()[0] == "detimb://demo/faster_rcnn_shapes" and len(line.split()) > 1
               for line in listed.stdout.splitlines())  # each name with what it is
    made = run([str(bin_dir / "detimb-make-dataset"), "--out", "data/shapes", "--train-counts", "3", "2", "2", "1",
                "1", "1", "--val-counts", "2", "1", "1", "1", "1", "1", "--image-size", "128"], tmp_path)
    assert made.returncode == 0, made.stderr
    trained = run([str(bin_dir / "detimb-train"), "--config", "detimb://demo/faster_rcnn_shapes", "--max-iters", "2",
                   "--no-progress", "--work-dir", "run", "--cfg-options", "data.batch_size=2", "data.num_workers=0"],
                  tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "bbox" in json.loads((tmp_path / "run" / "eval.json").read_text())


def test_tile_without_the_geo_extra_names_the_extra(installed, tmp_path):
    shadow = tmp_path / "shadow"  # the optional packages made unimportable, as if not installed
    for name in OPTIONAL:
        (shadow / name).mkdir(parents=True)
        (shadow / name / "__init__.py").write_text(f"raise ModuleNotFoundError(\"No module named '{name}'\")\n")
    env = {**os.environ, "PYTHONPATH": str(shadow)}
    tiled = run([str(installed / "bin" / "detimb-tile"), "--coco", "a.json", "--images", "img", "--out", "out"],
                tmp_path, env)
    assert tiled.returncode == 2 and "pip install 'detimb[geo]'" in tiled.stderr, tiled
    assert "Traceback" not in tiled.stderr
    # training needs none of them: one warning for TensorBoard, then a run
    data = run([str(installed / "bin" / "detimb-make-dataset"), "--out", "data/shapes", "--train-counts", "2", "1",
                "1", "1", "1", "1", "--val-counts", "1", "1", "1", "1", "1", "1", "--image-size", "128"], tmp_path, env)
    assert data.returncode == 0, data.stderr
    trained = run([str(installed / "bin" / "detimb-train"), "--config", "demo/faster_rcnn_shapes", "--max-iters", "1",
                   "--no-progress", "--work-dir", "run", "--cfg-options", "data.num_workers=0"], tmp_path, env)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert trained.stderr.count("skipping TensorBoard logging") == 1
