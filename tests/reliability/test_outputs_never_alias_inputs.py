"""No tool writes over one of its inputs, and the export's and infer's impossible settings are
named: the input stays byte-identical and nothing is left behind."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from detimb.cli import convert, export, infer
from detimb.config import load_config
from detimb.engine.trainer import Trainer
from detimb.errors import InputError
from detimb.utils import not_an_input
from tests.conftest import write_config


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_not_an_input_sees_through_other_spellings_and_links(tmp_path):
    source = tmp_path / "classes.txt"
    source.write_text("a\n")
    (tmp_path / "link.txt").symlink_to(source)
    for spelling in (source, tmp_path / "." / "classes.txt", tmp_path / "link.txt"):
        with pytest.raises(InputError, match="is an input of this command"):
            not_an_input(spelling, [source], "--out")
    with pytest.raises(InputError, match="is a folder"):
        not_an_input(tmp_path, [source], "--out")
    assert not_an_input(tmp_path / "new.json", [source, None], "--out") == tmp_path / "new.json"


@pytest.fixture(scope="module")
def checkpoint(tiny_shapes, tmp_path_factory):
    root = tmp_path_factory.mktemp("alias")
    config = write_config(root, tiny_shapes, "faster_rcnn", train={"schedule": {"max_iters": 1}})
    Trainer(load_config(config), root / "run", progress=False).train()
    return root / "run" / "last.pth"


@pytest.mark.parametrize("args,named", [
    (["--out", "{ckpt}"], "is an input of this command"),
    (["--out", "{dir}"], "is a folder"),
    (["--out", "{dir}/m.onnx", "--opset", "7"], "--opset 7: the export needs opset 11"),
], ids=["out_is_the_checkpoint", "out_is_a_folder", "opset_7"])
def test_export_refuses_by_name(checkpoint, tmp_path, capsys, args, named):
    before = sha(checkpoint)
    args = [a.format(ckpt=checkpoint, dir=tmp_path) for a in args]
    fmt = "onnx" if any(a.endswith(".onnx") for a in args) else "torchscript"
    assert export.main(["--checkpoint", str(checkpoint), "--format", fmt, *args]) == 2
    assert named in capsys.readouterr().err
    assert sha(checkpoint) == before and not list(tmp_path.glob("m.*"))


def test_convert_refuses_to_write_over_its_class_list(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    classes = tmp_path / "classes.txt"
    classes.write_text("square\ncircle\n")
    before = sha(classes)
    assert convert.main(["yolo2coco", "--images", str(tmp_path / "images"), "--labels", str(tmp_path / "labels"),
                         "--classes", str(classes), "--out", str(classes)]) == 2
    assert "is an input of this command" in capsys.readouterr().err and sha(classes) == before


@pytest.mark.parametrize("args,named", [(["--tile", "0"], "--tile must be one or two sizes >= 1"),
                                        (["--tile", "64", "--overlap", "64"], "--overlap must be a ratio")])
def test_infer_names_impossible_tiles(tmp_path, capsys, args, named):
    with pytest.raises(SystemExit) as stop:
        infer.parse_args(["--config", "c.yaml", "--checkpoint", "x.pth", "--images", "a.tif", "--out",
                          str(tmp_path), *args])
    assert stop.value.code == 2 and named in capsys.readouterr().err
