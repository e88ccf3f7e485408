"""Running statistics over ranks: with gloo on 2 processes, Seesaw's class counts, GHM's
bin densities and EFL's gradient sums after a step equal one process's on the union of the
two batches, and the ranks' mean GHM loss is that process's loss."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from detimb.losses import EqualizedFocalLoss, GHMCLoss, SeesawLoss

pytestmark = pytest.mark.slow  # two processes


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Seesaw logits (40, 4) and labels; GHM logits (40, 3) and 0/1 targets: rank r takes rows r::2."""
    g = torch.Generator().manual_seed(0)
    return (torch.randn(40, 4, generator=g), torch.randint(0, 4, (40,), generator=g),
            torch.randn(40, 3, generator=g) * 3, (torch.rand(40, 3, generator=g) < 0.2).float())


def rank_step(rank: int, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    seesaw_logits, labels, ghm_logits, targets = (t[rank::2] for t in batch())
    seesaw, ghm = SeesawLoss().train(), GHMCLoss(bins=10, momentum=0.75).train()
    seesaw(seesaw_logits, labels)
    loss = ghm(ghm_logits, targets)
    efl = EqualizedFocalLoss().train()
    efl(ghm_logits.requires_grad_(True), targets, avg_factor=4.0)  # the same normaliser on every rank
    torch.save({"cum_samples": seesaw.cum_samples, "acc_sum": ghm.density.acc_sum, "ghm": loss.detach(),
                "pos_grad": efl.pos_grad, "neg_grad": efl.neg_grad}, f"{out}/rank{rank}.pth")
    dist.destroy_process_group()


def test_statistics_over_two_gloo_ranks_equal_one_process_on_the_union(tmp_path):
    mp.spawn(rank_step, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pth", weights_only=True) for r in (0, 1)]
    seesaw_logits, labels, ghm_logits, targets = batch()
    seesaw, ghm = SeesawLoss().train(), GHMCLoss(bins=10, momentum=0.75).train()
    seesaw(seesaw_logits, labels)
    single = ghm(ghm_logits, targets)
    efl = EqualizedFocalLoss().train()
    efl(ghm_logits.requires_grad_(True), targets, avg_factor=4.0)
    for r in ranks:
        assert torch.equal(r["cum_samples"], seesaw.cum_samples)  # every rank holds the whole batch's counts
        assert torch.allclose(r["acc_sum"], ghm.density.acc_sum)
        assert torch.allclose(r["pos_grad"], efl.pos_grad) and torch.allclose(r["neg_grad"], efl.neg_grad)
    assert ((ranks[0]["ghm"] + ranks[1]["ghm"]) / 2).item() == pytest.approx(single.item(), rel=1e-5)
