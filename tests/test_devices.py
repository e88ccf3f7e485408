"""--device at every door: a device this machine lacks is a named error, not a traceback."""

from __future__ import annotations

import pytest
import torch

from detimb.cli import evaluate as evaluate_cli
from detimb.cli import train as train_cli
from detimb.distributed import resolve_device
from detimb.errors import InputError
from tests.conftest import write_config


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InputError, match="'gpu' is not a device"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA device"):
            resolve_device("cuda:1")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_train_and_eval_name_a_missing_cuda_device(tiny_shapes, tmp_path, capsys):
    config = write_config(tmp_path, tiny_shapes, "faster_rcnn")
    run = tmp_path / "run"
    base = ["--config", str(config), "--work-dir", str(run), "--max-iters", "1", "--no-progress", "--no-eval"]
    assert train_cli.main([*base, "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err and not (run / "last.pth").exists()
    assert train_cli.main([*base, "--device", "cpu"]) == 0
    assert evaluate_cli.main(["--config", str(config), "--checkpoint", str(run / "last.pth"), "--device",
                              "cuda:0"]) == 2
    assert "no CUDA device" in capsys.readouterr().err
