"""Samplers written for dense prediction, where every pixel is a candidate.

They use only labels (and losses), so they also run in detection heads; the dense head
hands them one ``Candidates`` per image with ``labels`` = the class map (0 background,
-1 ignored) and zero IoUs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from detimb.samplers.base import SAMPLERS, Candidates, Sampler, SamplerNeeds, pick_per_group, pick_random


@SAMPLERS.register("random_pixels")
class RandomPixelSampler(Sampler):
    """Uniform subsampling: at most ``num`` non-ignored candidates per image, drawn without
    regard to class (the plain baseline of patch-based training, Small & Ventura).
    Default num=4096."""

    def __init__(self, num: int = 4096) -> None:
        if num <= 0:
            raise ValueError(f"num must be > 0, got {num}")
        self.num = num

    def __call__(self, candidates: list[Candidates]) -> list[Tensor]:
        return [pick_random(c.labels >= 0, self.num).to(torch.float32) for c in candidates]


@SAMPLERS.register("class_balanced_pixels")
class ClassBalancedPixelSampler(Sampler):
    """Class-balanced pixel sampling (Small & Ventura, after the patch sampling of BraTS
    pipelines): per image, each class present (background included) gets an equal share
    ``num // n_present`` of the ``num`` candidates, drawn uniformly within the class; a
    class with fewer candidates gives all it has. Default num=4096."""

    def __init__(self, num: int = 4096) -> None:
        if num <= 0:
            raise ValueError(f"num must be > 0, got {num}")
        self.num = num

    def __call__(self, candidates: list[Candidates]) -> list[Tensor]:
        out = []
        for c in candidates:
            valid = c.labels >= 0
            present = int(torch.unique(c.labels[valid]).numel())
            keep = pick_per_group(valid, c.labels.clamp(min=0), max(1, self.num // max(1, present)))
            out.append(keep.to(torch.float32))
        return out


@SAMPLERS.register("ohem_pixels")
class OHEMPixelSampler(Sampler):
    """Hard pixel mining (OHEM, Shrivastava et al., CVPR 2016, in mmsegmentation's
    pixel form), over the whole batch. The head's objective supplies each candidate's loss
    under the configured loss; for cross-entropy the true-class probability is
    ``p = exp(-loss)``. With ``thresh``: keep candidates with
    ``p < max(thresh, p_k)``, where ``p_k`` is the (k+1)-th smallest probability and
    ``k = min_kept * batch size``, so at least k candidates of the batch survive (all when
    there are no more than k). Without
    ``thresh`` (top-k mode): keep the ``min_kept * batch size`` highest losses.
    Defaults: thresh=0.7, min_kept=10000."""

    needs = SamplerNeeds(losses=True)

    def __init__(self, thresh: float | None = 0.7, min_kept: int = 10000) -> None:
        if thresh is not None and not 0.0 < thresh <= 1.0:
            raise ValueError(f"thresh must be in (0, 1] or null, got {thresh}")
        if min_kept < 0:
            raise ValueError(f"min_kept must be >= 0, got {min_kept}")
        self.thresh, self.min_kept = thresh, min_kept

    def __call__(self, candidates: list[Candidates]) -> list[Tensor]:
        if any(c.losses is None for c in candidates):
            raise ValueError("ohem_pixels needs Candidates.losses; the head must score candidates first")
        labels = torch.cat([c.labels for c in candidates])
        losses = torch.cat([c.losses for c in candidates]).float()  # type: ignore[misc]
        valid = labels >= 0
        masked = torch.where(valid, losses, torch.full_like(losses, -math.inf))
        n_valid = int(valid.sum())
        k = min(self.min_kept * len(candidates), n_valid)
        if k >= n_valid:
            keep = valid
        elif self.thresh is None:
            keep = torch.zeros_like(valid)
            keep[masked.topk(k).indices] = True
        else:
            # p < max(thresh, p_k)  <=>  loss > min(-ln thresh, loss_k), loss_k the (k+1)-th largest
            loss_k = float(masked.topk(k + 1).values[-1])
            keep = valid & (losses > min(-math.log(self.thresh), loss_k))
        return [w.to(torch.float32) for w in keep.split([len(c.labels) for c in candidates])]
