"""Sliced inference over many scenes: in this process, sharded over torchrun ranks, or on
a pool of Ray actors.

Each finished scene leaves ``<out>/scenes/<name>-<hash>.json`` (its COCO records and image
entry, with the run's key), written atomically. A stopped run resumes by scene: a scene
whose file carries the same key (checkpoint, config overrides, slice settings, image id)
is not run again. Ranks share nothing but a final barrier: rank r runs scenes r, r + world,
... of the list. The results (``results_bbox.json``, ``results_segm.json``,
``images.json``) are then assembled from the scene files in the list's order, so they are
the same bytes however the scenes were spread.
"""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from detimb.errors import DetimbError
from detimb.inference.restore import RestoredModel, restore
from detimb.inference.sliced import ScenePrediction, SliceSettings, sliced_predict
from detimb.optional import require_extra
from detimb.utils import atomic_write_json

SCENES_FOLDER = "scenes"


@dataclass(frozen=True)
class SceneJob:
    """One scene to run: its file and the image id its records carry."""

    path: Path
    image_id: int

    @property
    def record_name(self) -> str:
        """The scene's file under ``scenes/``: its name and a hash of its full path (two
        folders may hold scenes of one name)."""
        digest = hashlib.sha1(str(self.path.resolve()).encode()).hexdigest()[:10]
        return f"{self.path.stem}-{digest}.json"


@dataclass(frozen=True)
class ModelSource:
    """Where each process (rank or Ray actor) restores the model from."""

    checkpoint: Path
    config: Path | None
    overrides: tuple[str, ...]

    def run_key(self, settings: SliceSettings) -> str:
        """What a scene's records depend on besides the scene: the checkpoint file (path,
        size, modification time), the config and its overrides, and the slice settings."""
        stat = self.checkpoint.stat()
        parts = [str(self.checkpoint.resolve()), stat.st_size, stat.st_mtime_ns,
                 str(self.config.resolve()) if self.config else None, list(self.overrides), repr(settings)]
        return hashlib.sha1(json.dumps(parts, default=str).encode()).hexdigest()


class SceneStore:
    """The per-scene files of one output folder, under one run key."""

    def __init__(self, out: Path, key: str) -> None:
        self.folder = out / SCENES_FOLDER
        self.key = key

    def _path(self, job: SceneJob) -> Path:
        return self.folder / job.record_name

    def load(self, job: SceneJob) -> dict[str, Any] | None:
        """The scene's saved record when it was made under this key (and this image id)."""
        path = self._path(job)
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return None  # torn by a crash before the atomic rename could not happen; rerun the scene
        if record.get("key") != self.key or record.get("image", {}).get("id") != job.image_id:
            return None
        return record

    def done(self, job: SceneJob) -> bool:
        return self.load(job) is not None

    def save(self, job: SceneJob, image: dict[str, Any], results: dict[str, list[dict[str, Any]]]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self._path(job), {"key": self.key, "scene": str(job.path), "image": image, **results})

    def assemble(self, jobs: list[SceneJob], out: Path) -> dict[str, int]:
        """``results_bbox.json`` (+ ``results_segm.json``) and ``images.json`` from every
        scene's file, in the order of ``jobs``; counts of records written."""
        records: dict[str, list[dict[str, Any]]] = {"bbox": [], "segm": []}
        images = []
        missing = []
        for job in jobs:
            record = self.load(job)
            if record is None:
                missing.append(str(job.path))
                continue
            images.append(record["image"])
            for kind in records:
                records[kind] += record[kind]
        if missing:
            raise DetimbError(f"{len(missing)} scene(s) have no results in {self.folder}, e.g. {missing[0]} (a rank"
                              " or worker stopped). Fix: run the same command again: finished scenes are kept")
        atomic_write_json(out / "results_bbox.json", records["bbox"])
        if records["segm"]:
            atomic_write_json(out / "results_segm.json", records["segm"])
        atomic_write_json(out / "images.json", images)
        return {kind: len(v) for kind, v in records.items()}


SceneDone = Callable[[SceneJob, ScenePrediction], None]
SceneFilter = Callable[[SceneJob], bool]


class SceneBackend(ABC):
    """Runs the scenes of ``jobs`` that ``needed`` accepts through the model, calling
    ``done`` in this process as each finishes."""

    @abstractmethod
    def run(self, jobs: list[SceneJob], needed: SceneFilter, done: SceneDone) -> None:
        ...


class ProcessScenes(SceneBackend):
    """This process's share of the scenes: all of them, or under torchrun rank r's (scenes
    r, r + world, ...), with the model restored on the rank's device."""

    def __init__(self, restored: RestoredModel, settings: SliceSettings, *, rank: int = 0, world: int = 1,
                 progress: bool = True) -> None:
        self.restored = restored
        self.settings, self.rank, self.world, self.progress = settings, rank, world, progress

    def run(self, jobs: list[SceneJob], needed: SceneFilter, done: SceneDone) -> None:
        share = [job for job in jobs[self.rank::self.world] if needed(job)]  # static shares: resumable per rank
        for job in tqdm(share, desc="scenes", unit="scene", disable=not (self.progress and self.rank == 0)):
            done(job, sliced_predict(self.restored.model, job.path, self.settings, self.restored.device))


class _SceneActor:
    """A Ray actor: restores the model once, then predicts the scenes it is sent."""

    def __init__(self, source: ModelSource, settings: SliceSettings, device: str, threads: int) -> None:
        torch.set_num_threads(threads)
        self.restored = restore(source.checkpoint, config=source.config, overrides=list(source.overrides),
                                device=device)
        self.settings = settings

    def predict(self, index: int, path: Path) -> tuple[int, ScenePrediction]:
        return index, sliced_predict(self.restored.model, path, self.settings, self.restored.device)


class RayScenes(SceneBackend):
    """The scenes on ``workers`` Ray actors (the ``ray`` extra), each holding the model
    once, with ``threads`` CPUs and ``gpus`` GPUs; on the cluster at ``address`` (None: the
    one this process is connected to, or a new local one). Scenes and the checkpoint must
    be readable on every node; the outputs are written here, by this process."""

    def __init__(self, source: ModelSource, settings: SliceSettings, *, workers: int, threads: int = 1,
                 gpus: float = 0.0, address: str | None = None, progress: bool = True) -> None:
        require_extra("ray", "detimb-infer --backend ray", ("ray",))
        if workers < 1 or threads < 1 or gpus < 0:
            raise DetimbError(f"--workers and --threads must be >= 1 and --gpus >= 0, got {workers}, {threads}, {gpus}")
        self.source, self.settings = source, settings
        self.workers, self.threads, self.gpus, self.address, self.progress = workers, threads, gpus, address, progress

    def run(self, jobs: list[SceneJob], needed: SceneFilter, done: SceneDone) -> None:
        import ray  # the ray extra, checked in __init__
        from ray.util import ActorPool

        if not ray.is_initialized():
            if self.address is None:  # a local Ray starts its workers at nice 15: the scenes are the work here
                os.environ.setdefault("RAY_worker_niceness", "0")
            ray.init(address=self.address, log_to_driver=False)
        todo = [job for job in jobs if needed(job)]
        if not todo:
            return
        actor = ray.remote(_SceneActor).options(num_cpus=self.threads, num_gpus=self.gpus)
        device = "cuda" if self.gpus > 0 else "cpu"
        pool = ActorPool([actor.remote(self.source, self.settings, device, self.threads)
                          for _ in range(min(self.workers, len(todo)))])
        results = pool.map_unordered(lambda a, item: a.predict.remote(*item), [(i, job.path) for i, job in
                                                                                enumerate(todo)])
        with tqdm(total=len(todo), desc="scenes", unit="scene", disable=not self.progress) as bar:
            for index, pred in results:
                done(todo[index], pred)
                bar.update(1)
