"""IoU-balanced sampling (Libra R-CNN): detimb's batched sampler against a NumPy port of
mmdetection's per-image samplers, on the same inputs, one thread.

The port follows mmdetection 2.x's ``InstanceBalancedPosSampler`` and
``IoUBalancedNegSampler`` (``mmdet/core/bbox/samplers/``): per image, NumPy index sets,
``np.random.choice`` without replacement, Python set arithmetic. Both sides keep the same
positives and negatives per image (checked), and the same mean negatives per IoU bin over
100 calls (reported; the refill after the bins is random); the timings are the mean of
``--repeats`` calls on 8 images x 2000 candidates (5% positives over 10 ground truths, 5%
ignored).

    python benchmarks/iou_balanced.py [--out benchmarks/results/iou_balanced_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import REPO, cpu_name  # noqa: E402
from detimb.samplers.base import Candidates  # noqa: E402
from detimb.samplers.iou_balanced import IoUBalancedSampler  # noqa: E402


def _choice(rng: np.random.Generator, items: np.ndarray | list, k: int) -> np.ndarray:
    return rng.choice(np.asarray(items, dtype=np.int64), size=k, replace=False)


def _at_most(rng: np.random.Generator, items: np.ndarray | list, k: int) -> np.ndarray:
    """All of ``items`` when they fit ``k``, else ``k`` of them at random (mmdetection's pattern)."""
    return _choice(rng, items, k) if len(items) > k else np.asarray(items, dtype=np.int64)


def _refill(rng: np.random.Generator, chosen: np.ndarray, pool: set, k: int) -> np.ndarray:
    """``chosen`` topped up to ``k`` at random from the rest of ``pool``."""
    if len(chosen) >= k:
        return chosen
    return np.concatenate([chosen, _at_most(rng, list(pool - set(chosen.tolist())), k - len(chosen))])


def numpy_positives(labels: np.ndarray, gt: np.ndarray, num_expected: int, rng: np.random.Generator) -> np.ndarray:
    """mmdetection's InstanceBalancedPosSampler._sample_pos, in NumPy."""
    pos_inds = np.flatnonzero(labels > 0)
    if len(pos_inds) <= num_expected:
        return pos_inds
    unique_gts = np.unique(gt[pos_inds])
    per_gt = int(round(num_expected / float(len(unique_gts))) + 1)
    sampled = []
    for g in unique_gts:
        sampled.append(_at_most(rng, np.flatnonzero((gt == g) & (labels > 0)), per_gt))
    chosen = _refill(rng, np.concatenate(sampled), set(pos_inds.tolist()), num_expected)
    return _at_most(rng, chosen, num_expected)


def _via_interval(ious: np.ndarray, full: set, k: int, lo: float, bins: int, rng: np.random.Generator) -> np.ndarray:
    width = (ious.max() - lo) / bins
    per_bin = int(k / bins)
    sampled = []
    for i in range(bins):
        in_bin = set(np.flatnonzero((ious >= lo + i * width) & (ious < lo + (i + 1) * width)).tolist()) & full
        sampled.append(_at_most(rng, list(in_bin), per_bin))
    return _refill(rng, np.concatenate(sampled), full, k)


def numpy_negatives(labels: np.ndarray, ious: np.ndarray, num_expected: int, num_bins: int, floor_thr: float,
                    floor_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """mmdetection's IoUBalancedNegSampler._sample_neg, in NumPy (its floor_thr < 0 branch
    sets the interval's lower end to 0 for the call)."""
    neg_inds = np.flatnonzero(labels == 0)
    if len(neg_inds) <= num_expected:
        return neg_inds
    neg_set = set(neg_inds.tolist())
    if floor_thr > 0:
        floor_set = set(np.flatnonzero((ious >= 0) & (ious < floor_thr)).tolist())
        iou_set = set(np.flatnonzero(ious >= floor_thr).tolist())
    elif floor_thr == 0:
        floor_set = set(np.flatnonzero(ious == 0).tolist())
        iou_set = set(np.flatnonzero(ious > floor_thr).tolist())
    else:
        floor_set = set()
        iou_set = set(np.flatnonzero(ious > floor_thr).tolist())
    floor_neg, iou_neg = list(floor_set & neg_set), list(iou_set & neg_set)
    want_iou = int(num_expected * (1 - floor_fraction))
    if len(iou_neg) > want_iou and num_bins >= 2:
        iou_chosen = _via_interval(ious, set(iou_neg), want_iou, max(floor_thr, 0.0), num_bins, rng)
    else:
        iou_chosen = _at_most(rng, iou_neg, want_iou)
    floor_chosen = _at_most(rng, floor_neg, num_expected - len(iou_chosen))
    return _refill(rng, np.concatenate([floor_chosen, iou_chosen]), neg_set, num_expected)


def numpy_sampler(images: list[tuple[np.ndarray, np.ndarray, np.ndarray]], num: int, pos_fraction: float,
                  num_bins: int, floor_thr: float, floor_fraction: float, rng: np.random.Generator
                  ) -> list[np.ndarray]:
    """Per image, a 0/1 float32 weight per candidate, as detimb's sampler returns."""
    out = []
    for labels, ious, gt in images:
        num_pos = min(int((labels > 0).sum()), int(num * pos_fraction))
        num_neg = min(int((labels == 0).sum()), num - num_pos)
        weights = np.zeros(len(labels), dtype=np.float32)
        weights[numpy_positives(labels, gt, num_pos, rng)] = 1
        weights[numpy_negatives(labels, ious, num_neg, num_bins, floor_thr, floor_fraction, rng)] = 1
        out.append(weights)
    return out


def make_inputs(images: int, per_image: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(images):
        labels = np.where(rng.random(per_image) < 0.05, rng.integers(1, 7, per_image), 0)
        labels[rng.random(per_image) < 0.05] = -1
        ious = np.where(labels > 0, 0.5 + 0.5 * rng.random(per_image), 0.5 * rng.random(per_image))
        out.append((labels.astype(np.int64), ious.astype(np.float32), rng.integers(0, 10, per_image)))
    return out


def bin_counts(weights: list[np.ndarray], images: list[tuple[np.ndarray, np.ndarray, np.ndarray]], num_bins: int
               ) -> list[list[int]]:
    """Per image: positives kept, then negatives kept per IoU bin (Libra's bins, floor_thr -1)."""
    counts = []
    for w, (labels, ious, _) in zip(weights, images):
        edges = np.linspace(0.0, ious.max(), num_bins + 1)
        neg = (w > 0) & (labels == 0)
        counts.append([int(((w > 0) & (labels > 0)).sum()),
                       *np.histogram(ious[neg], bins=edges)[0].astype(int).tolist()])
    return counts


def _time(call, repeats: int) -> float:
    call()
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - start) / repeats * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--per-image", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=200)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "iou_balanced_cpu.json"))
    args = p.parse_args()
    torch.set_num_threads(1)
    inputs = make_inputs(args.images, args.per_image)
    candidates = [Candidates(torch.from_numpy(labels), torch.from_numpy(ious), torch.from_numpy(gt))
                  for labels, ious, gt in inputs]
    settings = {"num": 512, "pos_fraction": 0.25, "num_bins": 3, "floor_thr": -1.0, "floor_fraction": 0.0}
    rows = {}
    for pos in ("instance_balanced", "random"):
        sampler = IoUBalancedSampler(**settings, pos=pos)
        row = {"detimb_ms": _time(lambda s=sampler: s(candidates), args.repeats)}
        if pos == "instance_balanced":
            rng = np.random.default_rng(0)
            row["numpy_port_ms"] = _time(lambda g=rng: numpy_sampler(inputs, **settings, rng=g), args.repeats)
            row["speedup"] = row["numpy_port_ms"] / row["detimb_ms"]
            ours = np.mean([bin_counts([w.numpy() for w in sampler(candidates)], inputs, 3) for _ in range(100)], 0)
            port = np.mean([bin_counts(numpy_sampler(inputs, **settings, rng=rng), inputs, 3) for _ in range(100)], 0)
            # positives and negatives per image are fixed by the quota; the refill makes the bins random
            row["kept_per_image_identical"] = bool(np.array_equal(ours[:, 0], port[:, 0])
                                                   and np.array_equal(ours.sum(1), port.sum(1)))
            row["mean_negatives_per_bin_detimb"] = ours[:, 1:].mean(0).round(2).tolist()
            row["mean_negatives_per_bin_port"] = port[:, 1:].mean(0).round(2).tolist()
        rows[f"pos={pos}"] = row
    result = {"benchmark": "iou_balanced", "device": f"{cpu_name()} (CPU, 1 thread)", "torch": torch.__version__,
              "images": args.images, "per_image": args.per_image, "repeats": args.repeats, "results": rows}
    print(json.dumps(result, indent=2))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
