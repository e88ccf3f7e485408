from pathlib import Path

import pytest
import yaml

from detimb.config import config_to_yaml, load_config, packaged_configs, parse_overrides, save_config
from detimb.errors import ConfigError


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


DATA = {"train": {"ann_file": "t.json", "img_dir": "t"}, "val": {"ann_file": "v.json", "img_dir": "v"}}


def test_base_files_merge_deeply_in_list_order(tmp_path):
    write(tmp_path / "a.yaml", {"data": DATA, "model": {"neck": {"out_channels": 32}}, "train": {"seed": 1}})
    write(tmp_path / "b.yaml", {"train": {"seed": 2, "grad_clip": 5.0}})
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "c.yaml",
          {"_base_": ["../a.yaml", "../b.yaml"], "model": {"neck": {"extra_blocks": "p6p7"}}})
    cfg = load_config(tmp_path / "sub" / "c.yaml")
    assert cfg.train.seed == 2  # b comes after a
    assert cfg.train.grad_clip == 5.0
    assert cfg.model.neck == {"type": "fpn", "out_channels": 32, "extra_blocks": "p6p7"}
    assert cfg.model.rpn.sampler == {"type": "random", "num": 256, "pos_fraction": 0.5}  # schema default


def test_two_bases_sharing_a_base_keep_both_changes(tmp_path):
    # the diamond of configs/combined/: libra and class_aware both start from the demo config
    write(tmp_path / "demo.yaml", {"data": DATA, "model": {"neck": {"type": "fpn"}}, "train": {"seed": 1}})
    write(tmp_path / "libra.yaml", {"_base_": "demo.yaml", "model": {"neck": {"type": "bfp", "base": "fpn"}}})
    write(tmp_path / "cas.yaml", {"_base_": "demo.yaml", "data": {"train": {"sampler": {"type": "class_aware"}}}})
    write(tmp_path / "both.yaml", {"_base_": ["libra.yaml", "cas.yaml"]})
    cfg = load_config(tmp_path / "both.yaml")
    assert cfg.model.neck.type == "bfp"  # not reset by demo.yaml merged again under cas.yaml
    assert cfg.data.train.sampler == {"type": "class_aware"}
    write(tmp_path / "later.yaml", {"_base_": ["libra.yaml", "cas.yaml"], "train": {"seed": 3}})
    assert load_config(tmp_path / "later.yaml").train.seed == 3  # the file itself still comes last


def test_slot_whose_type_changes_is_replaced_not_merged(tmp_path):
    write(tmp_path / "a.yaml", {"data": DATA, "model": {"roi_head": {"sampler": {"type": "random", "num": 64}}}})
    write(tmp_path / "b.yaml", {"_base_": "a.yaml", "model": {"roi_head": {"sampler": {"type": "ohem"}}}})
    assert dict(load_config(tmp_path / "b.yaml").model.roi_head.sampler) == {"type": "ohem"}
    write(tmp_path / "c.yaml", {"_base_": "a.yaml", "model": {"roi_head": {"sampler": {"pos_fraction": 0.5}}}})
    assert dict(load_config(tmp_path / "c.yaml").model.roi_head.sampler) == {
        "type": "random", "num": 64, "pos_fraction": 0.5}


def test_overrides_parse_yaml_values():
    assert parse_overrides(["a.b=3", "a.c=[1, 2]", "x=null", "y={type: fpn}"]) == {
        "a": {"b": 3, "c": [1, 2]}, "x": None, "y": {"type": "fpn"}}
    with pytest.raises(ConfigError, match="key.path=value"):
        parse_overrides(["novalue"])


def test_override_applies_after_files(tmp_path):
    write(tmp_path / "a.yaml", {"data": DATA})
    cfg = load_config(tmp_path / "a.yaml", ["train.schedule.steps=[10,20]", "model.type=retinanet"])
    assert list(cfg.train.schedule.steps) == [10, 20] and cfg.model.type == "retinanet"


def test_unknown_key_names_file_key_and_closest(tmp_path):
    write(tmp_path / "a.yaml", {"data": DATA})
    bad = write(tmp_path / "bad.yaml", {"_base_": "a.yaml", "model": {"roi_head": {"samplr": {"type": "random"}}}})
    with pytest.raises(ConfigError) as err:
        load_config(bad)
    msg = str(err.value)
    assert str(bad) in msg and "model.roi_head.samplr" in msg and "did you mean 'model.roi_head.sampler'" in msg


def test_unknown_override_key_is_attributed_to_cfg_options(tmp_path):
    write(tmp_path / "a.yaml", {"data": DATA})
    with pytest.raises(ConfigError, match=r"--cfg-options: unknown key 'train.lr'"):
        load_config(tmp_path / "a.yaml", ["train.lr=0.1"])


def test_wrong_type_is_reported(tmp_path):
    write(tmp_path / "a.yaml", {"data": DATA, "train": {"schedule": {"max_iters": "many"}}})
    with pytest.raises(ConfigError, match=r"a.yaml: wrong type for 'train.schedule.max_iters'"):
        load_config(tmp_path / "a.yaml")


def test_missing_required_keys_and_files(tmp_path):
    write(tmp_path / "a.yaml", {"model": {"type": "faster_rcnn"}})
    with pytest.raises(ConfigError, match="must be set: data.train.ann_file"):
        load_config(tmp_path / "a.yaml")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_circular_base_is_refused(tmp_path):
    write(tmp_path / "a.yaml", {"_base_": "b.yaml"})
    write(tmp_path / "b.yaml", {"_base_": "a.yaml"})
    with pytest.raises(ConfigError, match="circular"):
        load_config(tmp_path / "a.yaml")


def test_saved_config_reloads_to_the_same_config(tmp_path):
    write(tmp_path / "a.yaml", {"data": DATA, "model": {"roi_head": {"balancer": {"type": "fixed"}}}})
    cfg = load_config(tmp_path / "a.yaml", ["train.seed=7"])
    save_config(cfg, tmp_path / "run" / "config.yaml")
    again = load_config(tmp_path / "run" / "config.yaml")
    assert config_to_yaml(again) == config_to_yaml(cfg)


SHIPPED = sorted(p for p in Path(__file__).resolve().parents[1].glob("configs/**/*.yaml") if "_base_" not in p.parts)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    load_config(path)


def test_a_user_config_inherits_a_packaged_one_by_name(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("_base_: [detimb://demo/faster_rcnn_shapes]\nmodel:\n  roi_head:\n    loss_cls: {type: seesaw}\n")
    cfg = load_config(mine)
    assert cfg.model.roi_head.loss_cls.type == "seesaw" and cfg.model.backbone.type == "small_cnn"
    (tmp_path / "typo.yaml").write_text("_base_: [detimb://demo/faster_rcnn_shape]\n")
    with pytest.raises(ConfigError, match="did you mean 'demo/faster_rcnn_shapes'"):
        load_config(tmp_path / "typo.yaml")


def test_every_packaged_config_says_what_it_is():
    from detimb.config.packaged import describe_config

    missing = [name for name in packaged_configs() if not describe_config(name)]
    assert not missing, f"packaged configs without a first comment line: {missing}"


def test_the_api_overrides_take_a_list_or_a_dict_and_name_anything_else():
    from detimb.config import override_items

    assert override_items(["a.b=3"]) == ["a.b=3"]
    assert override_items({"a.b": 3, "c": "x", "d": [1, 2]}) == ["a.b=3", "c=x", "d=[1, 2]"]
    for bad in ("a.b=3", 42, None):
        with pytest.raises(ConfigError, match="overrides: give a list of 'key=value' strings or a dict, not"):
            override_items(bad)
