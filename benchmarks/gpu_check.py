"""What a first GPU run must confirm (issue #34), as one script of named checks.

    bash benchmarks/gpu_check.sh            # about 2 minutes on one GPU; prints PASS / FAIL per check
    python benchmarks/gpu_check.py --cpu     # the same checks' code on the CPU (bf16; fp16 skipped)

Each check trains or runs a few steps of the tiny demo model on data it writes, on CUDA:
fp16 and bf16 steps; ``--resume`` with Seesaw and EQL (their statistics must come back on
the GPU); the first sampling-free run with an empty prior cache (the counting pass on the
GPU); GHM-C under fp16 on a RetinaNet batch of 8 at 512 px (finite, and equal to fp32 to
1e-3); the dtype of RetinaNet's matched boxes under autocast (float32). ``gpu_check.sh`` adds
a 2-process torchrun where there are 2 GPUs. Without CUDA every check is reported as skipped.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from detimb.config import load_config  # noqa: E402
from detimb.data.coco import CocoDetection, collate  # noqa: E402
from detimb.data.synthetic import ShapesSpec, make_shapes_dataset  # noqa: E402
from detimb.engine.trainer import Trainer  # noqa: E402
from detimb.losses import GHMCLoss  # noqa: E402
from detimb.models import build_detector  # noqa: E402
from detimb.models.heads.batch import Targets  # noqa: E402
from tests.conftest import write_config  # noqa: E402

DEVICE = "cpu" if "--cpu" in sys.argv else "cuda"
HALF = torch.bfloat16 if DEVICE == "cpu" else torch.float16  # the CPU's autocast runs bf16
SPEC = ShapesSpec(train_counts=(24, 12, 8, 6, 4, 2), val_counts=(6, 4, 4, 3, 3, 2), image_size=64, min_object=10,
                  max_object=24, seed=3)


def trains(root: Path, data: Path, name: str, iters: int, device: str = DEVICE, **overrides: object) -> Path:
    (root / name).mkdir(parents=True, exist_ok=True)
    cfg = load_config(write_config(root / name, data, overrides.pop("model_type", "faster_rcnn"),
                                   train={"schedule": {"max_iters": iters}, **overrides.pop("train", {})},
                                   **overrides))
    run = root / name / "run"
    Trainer(cfg, run, progress=False, overwrite=True, device=device).train()
    return run


def amp_step(root: Path, data: Path, mode: str) -> str:
    if DEVICE == "cpu" and mode == "fp16":
        return "skipped on the CPU (fp16 autocast is CUDA's)"
    run = trains(root, data, f"amp_{mode}", 2, train={"amp": mode}, device=DEVICE)
    return f"last.pth at iteration {torch.load(run / 'last.pth', weights_only=True)['iteration']}"


def resume_with(root: Path, data: Path, loss: str) -> str:
    name = f"resume_{loss}"
    model = {"roi_head": {"loss_cls": {"type": loss, **({"lambda_": 0.05} if loss == "eql" else {})}}}
    run = trains(root, data, name, 2, model=model)
    cfg = load_config(run / "config.yaml", ["train.schedule.max_iters=4"])
    trainer = Trainer(cfg, run, resume=run / "last.pth", progress=False, device=DEVICE)
    off = [n for n, t in [*trainer.model.named_parameters(), *trainer.model.named_buffers()] if t.device.type != DEVICE]
    if off:
        raise AssertionError(f"after --resume, not on {DEVICE}: {off[:5]}")
    trainer.train()
    return f"every tensor on {DEVICE} after --resume; 2 more iterations trained"


def sampling_free_first_run(root: Path, data: Path) -> str:
    os.environ["DETIMB_CACHE_DIR"] = str(root / "empty_cache")  # no cached prior: the counting pass runs
    head = {"optimal_prior": True, "adaptive_score_thresh": True, "sampler": {"type": "all"},
            "loss_cls": {"type": "binary_cross_entropy"}, "balancer": {"type": "guided"}}
    run = trains(root, data, "sampling_free", 2, model_type="retinanet", model={"retina_head": head})
    return f"prior {torch.load(run / 'last.pth', weights_only=True)['priors']}"


def ghm_fp16(root: Path, data: Path) -> str:
    g = torch.Generator(device=DEVICE).manual_seed(0)
    # a RetinaNet batch of 8 at 512 px: 8 x (64^2 + 32^2 + 16^2 + 8^2 + 4^2) x 9 anchors x 80 classes
    anchors = 8 * sum(s * s for s in (64, 32, 16, 8, 4)) * 9
    logits = torch.randn(anchors, 80, device=DEVICE, generator=g) * 4
    targets = (torch.rand(anchors, 80, device=DEVICE, generator=g) < 1e-4).float()
    with torch.autocast(DEVICE, dtype=HALF):
        half = GHMCLoss()(logits.to(HALF), targets.to(HALF))
    full = GHMCLoss()(logits, targets)
    tolerance = 1e-3 if torch.float16 == HALF else 1e-2  # bf16 keeps 8 bits of mantissa
    if not math.isfinite(half.item()) or abs(half.item() - full.item()) > tolerance * abs(full.item()):
        raise AssertionError(f"fp16 {half.item()} against fp32 {full.item()}")
    return f"{logits.numel() / 1e6:.0f}M elements: {HALF} {half.item():.6f}, fp32 {full.item():.6f}"


def retinanet_matched_dtype(root: Path, data: Path) -> str:
    ds = CocoDetection(data / "annotations/train.json", data / "train")
    images, targets = collate([ds[0], ds[1]])
    (root / "dtype").mkdir(parents=True, exist_ok=True)
    cfg = load_config(write_config(root / "dtype", data, "retinanet"))
    model = build_detector(cfg.model, ds.label_map).to(DEVICE).train()
    seen: list[Targets] = []
    model.head.objective.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    with torch.autocast(DEVICE, dtype=HALF):
        model([i.to(DEVICE) for i in images], [{k: v.to(DEVICE) for k, v in t.items()} for t in targets])
    dtypes = {str(t.gt_boxes.dtype) for t in seen if t.gt_boxes is not None}
    if dtypes != {"torch.float32"}:
        raise AssertionError(f"matched boxes {dtypes}")
    return f"matched ground truth float32 under {HALF} autocast"


CHECKS: list[tuple[str, Callable[[Path, Path], str]]] = [
    ("fp16 step of the demo", lambda r, d: amp_step(r, d, "fp16")),
    ("bf16 step of the demo", lambda r, d: amp_step(r, d, "bf16")),
    ("--resume with seesaw", lambda r, d: resume_with(r, d, "seesaw")),
    ("--resume with eql", lambda r, d: resume_with(r, d, "eql")),
    ("first sampling-free run, empty prior cache", sampling_free_first_run),
    ("GHM-C under fp16, RetinaNet batch of 8 at 512 px", ghm_fp16),
    ("RetinaNet matched boxes under autocast", retinanet_matched_dtype),
]


def main() -> int:
    if DEVICE == "cuda" and not torch.cuda.is_available():
        print("SKIP every check: no CUDA device here (python benchmarks/gpu_check.py --cpu runs their code on the CPU)")
        return 0
    name = torch.cuda.get_device_name(0) if DEVICE == "cuda" else "CPU (--cpu)"
    print(f"device: {name}, torch {torch.__version__}")
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_shapes_dataset(root / "data", SPEC)
        for name, check in CHECKS:
            try:
                print(f"PASS  {name}: {check(root, root / 'data')}", flush=True)
            except Exception:  # noqa: BLE001 - each check reports and the next one runs
                failed += 1
                print(f"FAIL  {name}\n{traceback.format_exc(limit=3)}", flush=True)
    print(f"{len(CHECKS) - failed} of {len(CHECKS)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
