import torch

from detimb.samplers import Candidates


def cands(labels, ious=None, gt=None, losses=None) -> Candidates:
    labels = torch.as_tensor(labels, dtype=torch.int64)
    n = len(labels)
    return Candidates(labels,
                      torch.zeros(n) if ious is None else torch.as_tensor(ious, dtype=torch.float32),
                      torch.zeros(n, dtype=torch.int64) if gt is None else torch.as_tensor(gt, dtype=torch.int64),
                      None if losses is None else torch.as_tensor(losses, dtype=torch.float32))


def mixed(pos: int, neg: int, ignored: int, seed: int = 0) -> Candidates:
    g = torch.Generator().manual_seed(seed)
    labels = torch.cat([torch.randint(1, 4, (pos,), generator=g), torch.zeros(neg, dtype=torch.int64),
                        -torch.ones(ignored, dtype=torch.int64)])
    perm = torch.randperm(len(labels), generator=g)
    labels = labels[perm]
    ious = torch.where(labels > 0, 0.5 + 0.5 * torch.rand(len(labels), generator=g),
                       0.5 * torch.rand(len(labels), generator=g))
    gt = torch.randint(0, 5, (len(labels),), generator=g)
    losses = torch.rand(len(labels), generator=g)
    return Candidates(labels, ious, gt, losses)
