"""Remedies of the user's own: a YAML file of config keys, measured as a shipped remedy is;
files that would break the pairing, or that are not remedies, refused by name."""

from __future__ import annotations

import json

import pytest
import yaml

from detimb.config import load_config
from detimb.errors import ConfigError
from detimb.sweeps.plan import SweepError
from detimb.sweeps.remedies import own_remedy, remedy
from detimb.sweeps.remedy_files import read_remedies, read_remedy_file
from detimb.sweeps.run import sweep
from tests.conftest import write_config

OHEM = {"model": {"roi_head": {"sampler": {"type": "ohem", "mode": "quota", "num": 64, "pos_fraction": 0.25}}}}


def _file(folder, name, content) -> str:
    path = folder / name
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return str(path)


def test_a_remedy_file_is_named_after_it_and_read_as_it_is(tmp_path):
    name, fragment = read_remedy_file(_file(tmp_path, "big_ohem.yaml", OHEM))
    assert (name, fragment) == ("big_ohem", OHEM)
    names, own = read_remedies(["seesaw", _file(tmp_path, "mine.yml", {"data": {"batch_size": 4}}), "baseline"])
    assert names == ["seesaw", "mine", "baseline"] and own == {"mine": {"data": {"batch_size": 4}}}
    assert read_remedies([tmp_path / "big_ohem.yaml"]) == (["big_ohem"], {"big_ohem": OHEM})  # a Path, from Python


@pytest.mark.parametrize("content, message", [
    ({"train": {"schedule": {"max_iters": 90000}}}, "sets train.schedule.max_iters, which the sweep holds equal"),
    ({"train": {"seed": 3}}, "sets train.seed"),
    ({"data": {"val": {"ann_file": "other.json"}}}, "sets data.val.ann_file"),
    ({"data": {"train": {"ann_file": "other.json"}}}, "sets data.train.ann_file"),
    ({"evaluation": {"max_dets": 300}}, "sets evaluation.max_dets"),
    ({"model": {"type": "retinanet"}}, "sets model.type"),
    ({"work_dir": "elsewhere"}, "sets work_dir"),
    ({"_base_": ["../demo/faster_rcnn_shapes.yaml"], **OHEM}, "cannot have _base_"),
    ({}, "sets nothing, so it would train the baseline again"),
    ("- a list\n", "must be a mapping at the top level"),
    ({"model": {"roi_head": {"samplr": {"type": "ohem"}}}}, "samplr"),
    ({"data": {"batch_size": "two"}}, "wrong type for 'data.batch_size'"),
])
def test_a_remedy_file_that_is_not_a_remedy_is_refused_naming_it(tmp_path, content, message):
    path = _file(tmp_path, "mine.yaml", content)
    with pytest.raises(ConfigError, match=message) as err:
        read_remedy_file(path)
    assert path in str(err.value)


def test_file_names_that_cannot_name_a_remedy_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="'seesaw' is a shipped remedy's name. Fix: rename the file"):
        read_remedy_file(_file(tmp_path, "seesaw.yaml", OHEM))
    with pytest.raises(ConfigError, match="config file not found"):
        read_remedy_file(tmp_path / "absent.yaml")
    (tmp_path / "b").mkdir()
    twins = [_file(tmp_path, "mine.yaml", OHEM), _file(tmp_path / "b", "mine.yaml", {"data": {"batch_size": 4}})]
    with pytest.raises(ConfigError, match="are both named 'mine'"):
        read_remedies(twins)
    assert read_remedies([twins[0], twins[0]])[0] == ["mine", "mine"]  # the same file twice is one remedy


def test_an_own_remedy_fits_the_models_whose_parts_it_names(tmp_path, tiny_shapes):
    faster = load_config(write_config(tmp_path, tiny_shapes))
    retina = load_config(write_config(tmp_path, tiny_shapes, "retinanet"))
    focal_off = own_remedy("bce", {"model": {"retina_head": {"loss_cls": {"type": "binary_cross_entropy"}}}})
    assert focal_off.misfit(faster) == "model.type faster_rcnn has no model.retina_head"
    assert focal_off.misfit(retina) is None
    resample = own_remedy("rf", {"data": {"train": {"sampler": {"type": "repeat_factor", "threshold": 0.1}}}})
    assert resample.misfit(faster) is None and resample.misfit(retina) is None
    assert remedy("mine", {"mine": OHEM}).own and not remedy("ohem", {"mine": OHEM}).own


def test_a_sweep_measures_an_own_remedy_and_refuses_it_changed(tiny_shapes, tmp_path, monkeypatch):
    config = write_config(tmp_path, tiny_shapes)
    mine = _file(tmp_path, "big_batch_ohem.yaml", OHEM)
    settings = dict(seeds=[0], iters=2, workers=1, bootstrap=20, progress=False)
    result = sweep(config, out=tmp_path / "out", remedies=[mine], **settings)
    out = tmp_path / "out"
    summary = json.loads((out / "sweep.json").read_text())
    assert summary["remedies"] == ["baseline", "big_batch_ohem"] and summary["fragments"] == {"big_batch_ohem": OHEM}
    reason = next(c["reason"] for c in summary["choices"] if c["name"] == "big_batch_ohem")
    assert "your remedy: model.roi_head.sampler=" in reason
    assert load_config(out / "runs/big_batch_ohem/seed0/config.yaml").model.roi_head.sampler.type == "ohem"
    assert load_config(out / "runs/baseline/seed0/config.yaml").model.roi_head.sampler.type != "ohem"
    if result.recommended == "big_batch_ohem":
        assert load_config(out / "recommended.yaml").model.roi_head.sampler.type == "ohem"

    from detimb.sweeps import runner

    calls = []
    monkeypatch.setattr(runner, "execute", lambda folder, threads: calls.append(folder))
    sweep(config, out=out, remedies=[mine], **settings)  # the same file: nothing retrained
    assert calls == []
    _file(tmp_path, "big_batch_ohem.yaml", {**OHEM, "data": {"batch_size": 1}})
    with pytest.raises(SweepError, match="holds another sweep"):
        sweep(config, out=out, remedies=[mine], **settings)


def test_an_own_remedy_that_does_not_build_stops_the_sweep_before_anything_trains(tiny_shapes, tmp_path):
    config = write_config(tmp_path, tiny_shapes)
    typo = _file(tmp_path, "typo.yaml", {"model": {"roi_head": {"sampler": {"type": "ohemm"}}}})
    with pytest.raises(SweepError, match=r"your remedy 'typo' does not build on --config .*ohemm.*Fix: correct its"):
        sweep(config, out=tmp_path / "out", remedies=[typo], seeds=[0], iters=2, progress=False)
    assert not (tmp_path / "out").exists()
    # one for a head the model lacks is a misfit, skipped with the reason, as a shipped remedy is
    bce = {"model": {"retina_head": {"loss_cls": {"type": "binary_cross_entropy"}}}}
    retina_only = _file(tmp_path, "bce.yaml", bce)
    from detimb.sweeps.run import _candidates, _training_set

    cfg = load_config(config)
    found, choices = _candidates(["bce"], {"bce": read_remedy_file(retina_only)[1]}, cfg, _training_set(cfg), 6)
    assert [r.name for r in found] == ["baseline"]
    assert ("bce", False, "model.type faster_rcnn has no model.retina_head") in [
        (c.name, c.chosen, c.reason) for c in choices]
