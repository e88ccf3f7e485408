"""Step time (and parameters) of module variants relative to a baseline, on the demo
detector: one named suite per issue, each a set of configs in configs/.

    python benchmarks/compare.py necks|samplers|losses|long_tail [--rounds 8] [--steps 8] [--device cpu|cuda]
        [--only NAME ...] [--out FILE]

Writes benchmarks/results/<suite>_<device>.json. The samplers suite also times one
sampler call on 8 images x 2000 candidates.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, compare_step_times, device_name  # noqa: E402
from detimb.samplers import SAMPLERS, Candidates  # noqa: E402

SUITES: dict[str, dict[str, tuple[str, str]]] = {
    "necks": {n: (f"necks/{n}.yaml", "fpn") for n in ("fpn", "panet", "panet_afp", "bfp", "bfp_panet")},
    "samplers": {
        **{n: (f"samplers/{n}.yaml", "random") for n in ("random", "ohem", "ohem_ratio", "iou_balanced",
                                                          "instance_balanced", "focal", "isr_p")},
        "retinanet_sigmoid_focal_loss": ("demo/retinanet_shapes.yaml", "retinanet_sigmoid_focal_loss"),
        "retinanet_focal_sampler": ("samplers/retinanet_focal.yaml", "retinanet_sigmoid_focal_loss"),
    },
    "losses": {
        "smooth_l1 (torchvision default)": ("losses/smooth_l1.yaml", "smooth_l1 (torchvision default)"),
        **{n: (f"losses/{n}.yaml", "smooth_l1 (torchvision default)")
           for n in ("balanced_l1", "iou", "giou", "diou", "ciou", "rpn_giou", "ce_inverse_freq", "ce_effective_num")},
        **{f"balancer {n}": (f"balancers/{n}.yaml", "smooth_l1 (torchvision default)")
           for n in ("fixed", "carl", "guided", "guided_frozen")},
        "retinanet (torchvision default)": ("demo/retinanet_shapes.yaml", "retinanet (torchvision default)"),
        "retinanet sampling_free": ("published/sampling_free.yaml", "retinanet (torchvision default)"),
    },
    # the long-tail classification losses (and ISR-N) against cross-entropy on the demo detector
    "long_tail": {
        "cross_entropy (torchvision default)": ("losses/smooth_l1.yaml", "cross_entropy (torchvision default)"),
        **{n: (f"losses/{n}.yaml", "cross_entropy (torchvision default)")
           for n in ("sigmoid_ce", "seesaw", "eql", "eqlv2", "federated", "ecm", "bounded_iou")},
        "pisa (isr_n + isr_p + carl)": ("published/pisa.yaml", "cross_entropy (torchvision default)"),
        "retinanet (torchvision default)": ("demo/retinanet_shapes.yaml", "retinanet (torchvision default)"),
        "retinanet ghm_c + ghm_r": ("losses/ghm.yaml", "retinanet (torchvision default)"),
        "retinanet efl": ("losses/efl.yaml", "retinanet (torchvision default)"),
    },
}

CALL_SPECS = {
    "random": {"type": "random", "num": 512, "pos_fraction": 0.25},
    "instance_balanced": {"type": "instance_balanced", "num": 512, "pos_fraction": 0.25},
    "iou_balanced": {"type": "iou_balanced", "num": 512, "pos_fraction": 0.25},
    "ohem": {"type": "ohem", "num": 512, "pos_fraction": 0.25},
    "ohem_ratio": {"type": "ohem", "mode": "ratio"},
    "focal": {"type": "focal"},
    "isr_p": {"type": "isr_p"},
}


def sampler_call_ms(device: torch.device, images: int = 8, per_image: int = 2000, repeats: int = 20) -> dict:
    g = torch.Generator().manual_seed(0)
    candidates = []
    for _ in range(images):
        labels = torch.where(torch.rand(per_image, generator=g) < 0.05, torch.randint(1, 7, (per_image,), generator=g),
                             torch.zeros(per_image, dtype=torch.int64))
        labels[torch.rand(per_image, generator=g) < 0.05] = -1
        ious = torch.where(labels > 0, 0.5 + 0.5 * torch.rand(per_image, generator=g),
                           0.5 * torch.rand(per_image, generator=g))
        candidates.append(Candidates(labels.to(device), ious.to(device),
                                     torch.randint(0, 10, (per_image,), generator=g).to(device),
                                     torch.rand(per_image, generator=g).to(device)))
    out = {}
    for name, spec in CALL_SPECS.items():
        sampler = SAMPLERS.build(spec, name)
        sampler(candidates)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(repeats):
            sampler(candidates)
        if device.type == "cuda":
            torch.cuda.synchronize()
        out[name] = (time.perf_counter() - start) / repeats * 1000
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("suite", choices=sorted(SUITES))
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--only", nargs="+", help="these variants (and their baselines) only")
    p.add_argument("--out")
    args = p.parse_args()
    device = torch.device(args.device)
    variants = SUITES[args.suite]
    if args.only:
        unknown = sorted(set(args.only) - set(variants))
        if unknown:
            raise SystemExit(f"--only: no variants {unknown} in {args.suite}; it has {sorted(variants)}")
        keep = set(args.only) | {variants[n][1] for n in args.only}
        variants = {n: v for n, v in variants.items() if n in keep}
    result = {"benchmark": args.suite, "device": device_name(device), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "rounds": args.rounds, "steps_per_round": args.steps,
              "train_step": compare_step_times(variants, args.rounds, args.steps, device)}
    if args.suite == "samplers":
        result["sampler_call_ms_8x2000"] = sampler_call_ms(device)
    print(json.dumps(result, indent=2))
    out = Path(args.out or REPO / "benchmarks" / "results" / f"{args.suite}_{device.type}.json")
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
