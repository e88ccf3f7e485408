"""Sliced inference over many scenes: sharded over torchrun ranks and on Ray actors, the
outputs byte-identical to one process; resumed by scene."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

from detimb.cli import infer
from detimb.engine.trainer import Trainer
from detimb.errors import DetimbError
from detimb.inference.scene_runs import SceneJob, SceneStore
from tests.conftest import needs_extra, write_config

REPO = Path(__file__).resolve().parents[2]
OUTPUTS = ("results_bbox.json", "images.json", "scene_0.geojson", "scene_1.geojson", "scene_2.geojson")


@pytest.fixture(scope="module")
def model_and_scenes(tiny_shapes, tmp_path_factory):
    root = tmp_path_factory.mktemp("scene_runs")
    config = write_config(root, tiny_shapes, "faster_rcnn", train={"schedule": {"max_iters": 1}},
                          evaluation={"enabled": False})
    from detimb.config import load_config

    Trainer(load_config(config), root / "run", progress=False).train()
    scenes = root / "scenes"
    scenes.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        with rasterio.open(scenes / f"scene_{i}.tif", "w", driver="GTiff", width=160, height=120, count=3,
                           dtype="uint8", crs="EPSG:32617", transform=from_origin(400000.0 + i, 3300000.0, 0.1, 0.1)
                           ) as dst:
            dst.write(rng.integers(0, 256, (3, 120, 160), dtype=np.uint8))
    return root / "run" / "last.pth", scenes


def _args(checkpoint, scenes, out, *extra):
    return ["--checkpoint", str(checkpoint), "--images", str(scenes), "--out", str(out), "--tile", "64",
            "--overlap", "0.2", "--no-progress", *extra]


def _outputs(out: Path) -> dict[str, bytes]:
    return {name: (out / name).read_bytes() for name in OUTPUTS}


def _one_thread_run(checkpoint, scenes, out) -> dict[str, bytes]:
    """The one-process reference, with the ranks' and actors' thread count: torch's CPU
    kernels may round the last bit differently with another."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert infer.main(_args(checkpoint, scenes, out)) == 0
    finally:
        torch.set_num_threads(threads)
    return _outputs(out)


def test_two_torchrun_ranks_write_the_bytes_one_process_writes(model_and_scenes, tmp_path):
    checkpoint, scenes = model_and_scenes
    single = _one_thread_run(checkpoint, scenes, tmp_path / "one")
    assert len(json.loads(single["results_bbox.json"])) > 10  # the untrained model detects plenty
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", "29517", "-m", "detimb.cli.infer",
                           *_args(checkpoint, scenes, tmp_path / "two")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert _outputs(tmp_path / "two") == single
    assert len(list((tmp_path / "two" / "scenes").glob("*.json"))) == 3


def test_a_stopped_run_resumes_by_scene_and_new_settings_run_again(model_and_scenes, tmp_path, capsys):
    checkpoint, scenes = model_and_scenes
    out = tmp_path / "out"
    assert infer.main(_args(checkpoint, scenes, out)) == 0
    first = _outputs(out)
    capsys.readouterr()
    lost = next((out / "scenes").glob("scene_1-*.json"))
    lost.unlink()  # as if the run had stopped before this scene
    (out / "results_bbox.json").unlink()
    assert infer.main(_args(checkpoint, scenes, out)) == 0
    printed = capsys.readouterr().out
    assert "2 of 3 scenes were finished by an earlier run" in printed and "scene_1.tif: " in printed
    assert "scene_0.tif: " not in printed
    assert _outputs(out) == first
    assert infer.main(_args(checkpoint, scenes, out, "--score-thr", "0.5")) == 0  # another run key: all again
    printed = capsys.readouterr().out
    assert "finished by an earlier run" not in printed and "scene_0.tif: " in printed
    assert json.loads((out / "results_bbox.json").read_text()) == [
        r for r in json.loads(first["results_bbox.json"]) if r["score"] >= 0.5]


def test_assembling_names_scenes_without_results(tmp_path):
    store = SceneStore(tmp_path, "key")
    jobs = [SceneJob(tmp_path / "a.tif", 1), SceneJob(tmp_path / "b.tif", 2)]
    store.save(jobs[0], {"id": 1, "file_name": "a.tif", "width": 4, "height": 4}, {"bbox": [], "segm": []})
    with pytest.raises(DetimbError, match=r"1 scene\(s\) have no results .*b.tif.*run the same command again"):
        store.assemble(jobs, tmp_path)
    assert not SceneStore(tmp_path, "other key").done(jobs[0])  # a file from other settings does not count


def test_the_ray_backend_writes_the_bytes_one_process_writes(model_and_scenes, tmp_path):
    ray = needs_extra("ray", "ray")
    checkpoint, scenes = model_and_scenes
    single = _one_thread_run(checkpoint, scenes, tmp_path / "one")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        assert infer.main(_args(checkpoint, scenes, tmp_path / "ray", "--backend", "ray", "--workers", "2")) == 0
    finally:
        ray.shutdown()
    assert _outputs(tmp_path / "ray") == single
