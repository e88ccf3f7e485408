"""Hard example reintroduction between epochs (Small & Ventura, after BraTS patch training)."""

from __future__ import annotations

import numpy as np
import torch
from omegaconf import DictConfig
from torch import nn

from detimb.data.pixels import to_chw_tensor
from detimb.data.segmentation import SegmentationDataset, Spec
from detimb import distributed


class HardExampleMiner:
    """Before epoch ``e`` (``e`` a positive multiple of ``every_epochs``), re-score a
    ``subset`` of epoch ``e - 1``'s patches with the current model in eval mode, as drawn
    (before augmentation). A patch's confidence is the mean predicted probability of the
    true class over the pixels of its centre's class (all labelled pixels for random
    patches). Patches with confidence < ``confidence`` open epoch ``e``, least confident
    first, at most ``max_fraction`` of the epoch. Each rank scores its share; the lists are
    gathered so every rank agrees. The chosen patches live in the dataset's state, which
    checkpoints carry, so a resumed run reintroduces the same ones.
    """

    def __init__(self, cfg: DictConfig, dataset: SegmentationDataset, batch_size: int, rank: int, world: int,
                 seed: int) -> None:
        if not 0.0 < cfg.subset <= 1.0 or not 0.0 < cfg.max_fraction <= 1.0 or cfg.every_epochs < 1:
            raise ValueError("data.train.hard_examples: need 0 < subset <= 1, 0 < max_fraction <= 1, every_epochs >= 1")
        self.cfg, self.dataset, self.batch_size = cfg, dataset, batch_size
        self.rank, self.world, self.seed = rank, world, seed
        self.stats: dict[str, float] = {}

    def due(self, epoch: int) -> bool:
        return epoch > 0 and epoch % self.cfg.every_epochs == 0 and epoch not in self.dataset.hard

    @torch.no_grad()
    def before_epoch(self, model: nn.Module, epoch: int, device: torch.device) -> None:
        if not self.due(epoch):
            return
        previous, n = epoch - 1, len(self.dataset)
        rng = np.random.default_rng([self.seed, previous, 7])
        chosen = np.sort(rng.choice(n, size=max(1, round(self.cfg.subset * n)), replace=False))
        mine = chosen[self.rank::self.world].tolist()
        was_training = model.training
        model.eval()
        scored: list[tuple[float, Spec]] = []
        for start in range(0, len(mine), self.batch_size):
            items = [self.dataset.raw_item(previous, i) for i in mine[start:start + self.batch_size]]
            images = [to_chw_tensor(im).to(device) for im, _, _ in items]
            outputs = model(images)
            for (_, cmap, spec), out in zip(items, outputs):
                scored.append((self._confidence(out["sem_seg"].cpu(), torch.from_numpy(cmap), spec), spec))
        model.train(was_training)
        everyone = [s for part in distributed.all_gather_objects(scored) for s in part]
        hard = sorted((s for s in everyone if s[0] < self.cfg.confidence), key=lambda s: (s[0], s[1]))
        kept = hard[:int(self.cfg.max_fraction * n)]
        self.dataset.set_hard(epoch, [spec for _, spec in kept])
        self.stats = {"hard/scored": float(len(everyone)), "hard/below_confidence": float(len(hard)),
                      "hard/reintroduced": float(len(kept)),
                      "hard/mean_confidence": float(np.mean([s[0] for s in everyone])) if everyone else 0.0}

    def _confidence(self, probs: torch.Tensor, cmap: torch.Tensor, spec: Spec) -> float:
        cls = spec[3]
        pixels = (cmap == cls) if cls >= 0 else (cmap != self.dataset.ignore_index)
        if not bool(pixels.any()):
            return 1.0
        truth = cmap.clamp(max=probs.shape[0] - 1)
        p_true = probs.gather(0, truth[None]).squeeze(0)
        return float(p_true[pixels].mean())
