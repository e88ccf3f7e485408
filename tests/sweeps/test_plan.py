"""A sweep's folder check: its own plan continues; another config, or another sweep, is
refused naming what changed; a key that only another detimb's schema has is not a change."""

from __future__ import annotations

import json

import pytest

from detimb.config import load_config
from detimb.sweeps.plan import SweepError, SweepSettings, check_folder, config_hash, plan_runs, write_plan
from detimb.sweeps.remedies import remedy
from tests.conftest import write_config


def _settings(cfg, **changes) -> SweepSettings:
    fields = dict(config="c.yaml", config_hash=config_hash(cfg), overrides=(), remedies=("baseline", "seesaw"),
                  seeds=(0, 1), iters=10, split_seed=0, test=None, test_images=None, objective="auto", bootstrap=50,
                  code="x")
    return SweepSettings(**{**fields, **changes})


@pytest.fixture
def planned(tmp_path, tiny_shapes):
    cfg = load_config(write_config(tmp_path, tiny_shapes))
    out = tmp_path / "out"
    out.mkdir()
    write_plan(out, _settings(cfg), cfg)
    return out, cfg


def _edit_plan(out, edit) -> None:
    plan = json.loads((out / "plan.json").read_text())
    edit(plan)
    (out / "plan.json").write_text(json.dumps(plan))


def test_the_same_plan_continues_and_more_remedies_may_join(planned):
    out, cfg = planned
    check_folder(out, _settings(cfg), cfg)
    check_folder(out, _settings(cfg, remedies=("baseline", "seesaw", "norcal")), cfg)
    with pytest.raises(SweepError, match=r"remedies: \['baseline', 'seesaw'\] there, \['baseline'\] now"):
        check_folder(out, _settings(cfg, remedies=("baseline",)), cfg)


def test_a_key_only_another_schema_has_is_not_a_change(planned):
    out, cfg = planned

    def older_detimb(plan):  # its schema had no data.cache and one more (since removed) option
        del plan["resolved"]["data"]["cache"]
        plan["resolved"]["train"]["removed_option"] = 3
        plan["config_hash"] = "0" * 16

    _edit_plan(out, older_detimb)
    check_folder(out, _settings(cfg), cfg)


def test_a_changed_value_is_refused_naming_it(planned):
    out, cfg = planned

    def other_sampler(plan):
        plan["resolved"]["model"]["roi_head"]["sampler"] = {"type": "ohem", "num": 64}
        plan["resolved"]["data"]["batch_size"] = 7
        plan["config_hash"] = "0" * 16

    _edit_plan(out, other_sampler)
    with pytest.raises(SweepError, match=r"the config: data.batch_size: 7 there, 2 now, model.roi_head.sampler: "
                                         r"\{'type': 'ohem', 'num': 64\} there, .* now\)"):
        check_folder(out, _settings(cfg), cfg)


def test_a_plan_without_its_resolved_config_needs_the_same_hash(planned):
    out, cfg = planned
    _edit_plan(out, lambda plan: plan.pop("resolved"))
    check_folder(out, _settings(cfg), cfg)
    _edit_plan(out, lambda plan: plan.update(config_hash="0" * 16))
    with pytest.raises(SweepError, match="the config resolves to other values"):
        check_folder(out, _settings(cfg), cfg)


def test_runs_go_seed_by_seed_so_a_stopped_sweep_has_every_remedy_paired(planned):
    out, cfg = planned
    found = [remedy("baseline"), remedy("seesaw"), remedy("norcal")]
    settings = _settings(cfg, remedies=tuple(r.name for r in found))
    runs = plan_runs(settings, found, cfg, out)
    assert [(r.remedy, r.seed) for r in runs] == [("baseline", 0), ("seesaw", 0), ("norcal", 0),
                                                  ("baseline", 1), ("seesaw", 1), ("norcal", 1)]
    # the post-hoc remedy calibrates its own seed's trained run; trained runs calibrate nothing
    assert [r.calibrates for r in runs if r.seed == 1] == [None, None, out / "runs/baseline/seed1"]
    assert runs[1].folder == out / "runs/seesaw/seed0"
