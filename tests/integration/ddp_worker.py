"""Run under torchrun by test_ddp: train a few iterations, dump this rank's weights."""

import sys
from pathlib import Path

import torch

from detimb.config import load_config
from detimb import distributed
from detimb.engine.trainer import Trainer

if __name__ == "__main__":
    torch.set_num_threads(1)
    config, work = sys.argv[1], Path(sys.argv[2])
    trainer = Trainer(load_config(config), work, progress=False)
    trainer.train()
    data = trainer.train_set.state_dict() if hasattr(trainer.train_set, "state_dict") else {}
    torch.save({"model": trainer.model.state_dict(), "data": data}, work / f"rank{trainer.rank}.pth")
    distributed.cleanup()
