import random

import numpy as np
import pytest
import torch

from detimb.engine.checkpoint import cuda_rng_of, rng_state, save_checkpoint, set_rng_state
from detimb.models.weights import load_checkpoint
from detimb.utils import read_torch_file
from detimb.errors import CheckpointError
from detimb.engine.optim import WarmupSchedule


def test_warmup_then_steps_by_hand():
    s = WarmupSchedule(100, 10, 0.1, "step", [50, 80], 0.1, 0.0)
    assert s(0) == pytest.approx(0.1)
    assert s(5) == pytest.approx(0.1 * 0.5 + 0.5)  # linear from 0.1 to 1
    assert s(10) == 1.0 and s(49) == 1.0
    assert s(50) == pytest.approx(0.1) and s(80) == pytest.approx(0.01)


def test_cosine_ends_at_min_factor():
    s = WarmupSchedule(100, 0, 1.0, "cosine", [], 0.1, 0.05)
    assert s(0) == pytest.approx(1.0)
    assert s(50) == pytest.approx(0.05 + 0.95 * 0.5)
    assert s(100) == pytest.approx(0.05)


def test_rng_round_trip_through_a_weights_only_checkpoint(tmp_path):
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    save_checkpoint(tmp_path / "c.pth", {"rng": rng_state()})
    want = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(read_torch_file(tmp_path / "c.pth")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == want
    assert [p.name for p in tmp_path.iterdir()] == ["c.pth"]  # no temp file left behind



def test_cuda_generator_state_of_a_run_saved_on_more_gpus():
    one, two, four = (torch.full((16,), i, dtype=torch.uint8) for i in (1, 2, 4))
    assert torch.equal(cuda_rng_of(one, 0), one)  # this version: the saving device's state only
    assert torch.equal(cuda_rng_of([one, two, four], 1), two)  # earlier versions: every visible GPU's
    assert torch.equal(cuda_rng_of([one, two, four], 5), one)  # saved on 3 GPUs, resumed as device 5
    with pytest.raises(CheckpointError, match="empty list"):
        cuda_rng_of([], 0)

def test_missing_checkpoint():
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint("/nonexistent/x.pth")
