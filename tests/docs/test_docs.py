"""The docs cannot drift: the config reference is regenerated and compared, every ```python
block in README.md and docs/ runs, the newcomer's three steps run on a COCO file the test
writes, the README's config example loads, and every relative link points to a file."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from detimb.cli.config_reference import render
from detimb.config import load_config
from tests.conftest import REPO

DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [REPO / "README.md", *DOCS]
BIN = Path(sys.executable).parent


def blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), re.S)


def test_the_config_reference_is_generated_from_the_code():
    assert (REPO / "docs" / "config_reference.md").read_text() == render(), \
        "docs/config_reference.md is stale: python -m detimb.cli.config_reference"


@pytest.fixture
def workspace(tmp_path: Path, tiny_shapes: Path, monkeypatch) -> Path:
    """A clone's working folder after `make dataset`: data/shapes (the tiny set stands in)."""
    shutil.copytree(tiny_shapes, tmp_path / "data" / "shapes")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("page", [p for p in PAGES if blocks(p, "python")], ids=lambda p: p.name)
def test_every_python_block_runs(page: Path, workspace: Path):
    """A page's blocks, in order, as one script in a fresh interpreter: what a reader runs,
    and nothing it registers (a sampler in extending.md) leaks into the other tests."""
    setup = ""
    if page.name == "README.md":  # the README predicts with the demo's checkpoint: train a tiny one first
        setup = ('import detimb\ndetimb.train("detimb://demo/faster_rcnn_shapes",'
                 ' overrides={"train.schedule.max_iters": 2}, progress=False)\n')
    script = workspace / f"{page.stem}_blocks.py"
    script.write_text(setup + "\n".join(blocks(page, "python")))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, str(script)], cwd=workspace, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"{page.name}: a python block failed\n{done.stderr[-3000:]}"


def commands(page: Path, heading: str) -> list[str]:
    section = page.read_text().split(heading, 1)[1]
    script = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    script = script.replace("\\\n", " ")
    return [line for line in script.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_your_own_data_in_three_steps_runs(workspace: Path):
    """docs/getting_started.md's commands, as written, on a COCO dataset at my_data/; the
    training step adds --max-iters 2 so that it runs in seconds."""
    shutil.move(workspace / "data" / "shapes", workspace / "my_data")
    steps = commands(REPO / "docs" / "getting_started.md", "## Your own data in three steps")
    assert [shlex.split(s)[0] for s in steps] == ["detimb-analyze", "detimb-train", "detimb-eval"]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    for step in steps:
        args = shlex.split(step) + (["--max-iters", "2", "--no-progress"] if "detimb-train" in step else [])
        done = subprocess.run(args, cwd=workspace, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{step}\n{done.stderr[-2000:]}"
    assert (workspace / "my_data/report/stats.json").is_file()
    assert "per-class AP (rare first)" in done.stdout and (workspace / "work_dirs/my_data/eval/eval.json").is_file()


def test_the_readme_config_example_loads_and_builds(workspace: Path, tiny_shapes: Path):
    from detimb.data.coco import CocoDetection
    from detimb.models import build_model

    example = next(b for b in blocks(REPO / "README.md", "yaml") if "_base_" in b)
    (workspace / "example.yaml").write_text(example)
    cfg = load_config(workspace / "example.yaml")
    assert cfg.model.roi_head.loss_cls.type == "seesaw" and cfg.data.train.sampler.type == "repeat_factor"
    build_model(cfg.model, CocoDetection(cfg.data.train.ann_file, cfg.data.train.img_dir).label_map)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_point_to_files(page: Path):
    for target in re.findall(r"\]\(([^)#:\s]+)(?:#[^)]*)?\)", page.read_text()):
        assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"
