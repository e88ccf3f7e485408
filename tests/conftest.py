"""Shared fixtures: a tiny generated COCO dataset and tiny model configs (CPU, seconds)."""

from __future__ import annotations

import atexit
import importlib
import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# sampling-free's prior cache and the image-check cache: never the user's home from a test
# run, and gone when the run ends (each xdist process makes its own)
if "DETIMB_CACHE_DIR" not in os.environ:
    os.environ["DETIMB_CACHE_DIR"] = tempfile.mkdtemp(prefix="detimb-test-cache-")
    atexit.register(shutil.rmtree, os.environ["DETIMB_CACHE_DIR"], ignore_errors=True)

import pytest  # noqa: E402
import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from detimb.config import load_config  # noqa: E402
from detimb.data.synthetic import ShapesSpec, make_shapes_dataset  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# Free space the suite needs in the temporary folder while it runs: its largest tests
# write checkpoints of full-size torchvision models (about 170 MB each, two workers at
# once). A full disk makes writes fail in ways that can hang a test until pytest-timeout
# kills its worker, so too little space is a clear error before the first test instead.
MIN_FREE_BYTES = 2 * 1024**3


def pytest_sessionstart(session: pytest.Session) -> None:
    temp = Path(tempfile.gettempdir())
    free = shutil.disk_usage(temp).free
    if free < MIN_FREE_BYTES:
        raise pytest.UsageError(
            f"{temp} has {free / 1024**3:.1f} GiB free; the test suite needs {MIN_FREE_BYTES / 1024**3:.0f} GiB"
            " while it runs. Fix: free space there, or point TMPDIR at a disk with room")

# Two xdist workers share two cores: one thread each keeps them from fighting.
torch.set_num_threads(1)

TINY_MODEL = {
    "backbone": {"type": "small_cnn", "channels": [8, 16, 16, 32], "stem_channels": 8},
    "neck": {"type": "fpn", "out_channels": 16, "extra_blocks": "maxpool"},
    "transform": {"resize": False, "min_size": 64, "max_size": 64},
    "anchors": {"sizes": [[12], [18], [27], [40], [60]], "aspect_ratios": [0.5, 1.0, 2.0]},
    "rpn": {"pre_nms_top_n_train": 100, "post_nms_top_n_train": 50, "pre_nms_top_n_test": 50,
            "post_nms_top_n_test": 20, "sampler": {"type": "random", "num": 32, "pos_fraction": 0.5}},
    "roi_head": {"sampler": {"type": "random", "num": 32, "pos_fraction": 0.25}, "representation_size": 32,
                 "mask_layers": [8], "mask_roi_output_size": 7, "detections_per_img": 20},
    "retina_head": {"detections_per_img": 20, "topk_candidates": 100},
}
RETINA_NECK = {"type": "fpn", "out_channels": 16, "extra_blocks": "p6p7", "levels": [1, 2, 3]}


def straight_and_resumed(cfg, root: Path, stop_at: int) -> tuple[dict, dict]:
    """Train ``cfg`` straight through (``root/straight``) and interrupted: stopped after
    ``stop_at`` iterations, then resumed from its last.pth to the end (``root/resumed``).
    Returns both runs' last checkpoints (straight, resumed)."""
    from detimb.models.weights import load_checkpoint
    from detimb.engine.trainer import Trainer

    Trainer(cfg, root / "straight", progress=False).train()
    short = load_config(root / "straight" / "config.yaml", [f"train.schedule.max_iters={stop_at}"])
    Trainer(short, root / "resumed", progress=False).train()
    Trainer(cfg, root / "resumed", resume=root / "resumed" / "last.pth", progress=False).train()
    return load_checkpoint(root / "straight" / "last.pth"), load_checkpoint(root / "resumed" / "last.pth")


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 64 px long-tailed shapes dataset: 6 classes, a few dozen images."""
    root = tmp_path_factory.mktemp("shapes")
    spec = ShapesSpec(train_counts=(24, 12, 8, 6, 4, 2), val_counts=(6, 4, 4, 3, 3, 2), image_size=64,
                      min_object=10, max_object=24, seed=3)
    make_shapes_dataset(root, spec)
    return root


def write_config(tmp_path: Path, data_root: Path, model_type: str = "faster_rcnn", **overrides: object) -> Path:
    """A complete tiny config file for ``model_type`` on ``data_root``; ``overrides`` merge on top."""
    model = OmegaConf.create(TINY_MODEL)
    model.type = model_type
    if model_type == "retinanet":
        model.neck = RETINA_NECK
        model.anchors.sizes = [[16], [24], [36], [54], [80]]
    if model_type == "ssd":  # SSDlite: the lighter variant (its own backbone and 320 px input)
        model.ssd_head = {"variant": "ssdlite320_mobilenet_v3_large", "score_thresh": 0.001}
    if model_type == "fcos":  # one point per location, sized as the level's stride; GroupNorm(32) heads
        model.neck = {**RETINA_NECK, "out_channels": 64}  # 2 channels per group: a 1x1 P7 of one image normalises
        model.anchors.sizes, model.anchors.aspect_ratios = [[8], [16], [32], [64], [128]], [1.0]
    cfg = OmegaConf.create({
        "model": model,
        "data": {
            "train": {"ann_file": str(data_root / "annotations/train.json"), "img_dir": str(data_root / "train"),
                      "transforms": [{"type": "HorizontalFlip", "p": 0.5}]},
            "val": {"ann_file": str(data_root / "annotations/val.json"), "img_dir": str(data_root / "val")},
            "batch_size": 2, "val_batch_size": 4,
        },
        "train": {"optimizer": {"lr": 0.01}, "schedule": {"max_iters": 4, "warmup_iters": 2},
                  "log_interval": 2, "eval_interval": 1000, "checkpoint_interval": 1000},
    })
    base = tmp_path / f"{model_type}_base.yaml"
    OmegaConf.save(cfg, base)
    # Overrides form a layer of their own so detimb's merge rules apply (a slot whose type
    # changes is replaced, not merged).
    path = tmp_path / f"{model_type}.yaml"
    OmegaConf.save(OmegaConf.create({"_base_": [base.name], **overrides}), path)
    return path


@pytest.fixture
def tiny_config(tmp_path: Path, tiny_shapes: Path):
    """A factory: ``tiny_config("retinanet", **overrides)`` -> loaded, validated config."""

    def make(model_type: str = "faster_rcnn", **overrides: object):
        return load_config(write_config(tmp_path, tiny_shapes, model_type, **overrides))

    return make


def needs_extra(module: str, extra: str):
    """``module`` of the optional extra ``extra``: skipped where the extra is not installed,
    but on CI, which installs every extra (requirements-dev.txt), a missing one fails."""
    if os.environ.get("CI"):
        return importlib.import_module(module)
    return pytest.importorskip(module, reason=f"the {extra} extra is not installed")
