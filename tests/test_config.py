"""Config schema: defaults, YAML merge, dotted overrides and errors that name the key."""

import pytest

from rgbtad.config import build_config, load_config, save_config
from rgbtad.core.errors import RgbtadError


def test_defaults_are_actionformer_thumos():
    cfg = build_config()
    assert cfg.model.arch == (2, 2, 5)
    assert cfg.model.n_mha_win_size == 19
    assert cfg.model.n_head == 4 and cfg.model.embd_dim == 512
    assert cfg.train.center_sample_radius == 1.5
    assert cfg.train.ema_decay == 0.999
    assert cfg.test.nms_sigma == 0.5 and cfg.test.max_seg_num == 200
    assert cfg.data.max_seq_len == 2304 and cfg.data.feat_stride == 4


def test_yaml_and_overrides_merge(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  input_dim: 1024\n  channels: rgb\ntrain:\n  epochs: 3\n")
    cfg = load_config(path, ["train.learning_rate=2e-4", "model.arch=[2,2,4]",
                             "model.regression_range=[[0,4],[4,8],[8,16],[16,32],[32,10000]]"])
    assert cfg.data.input_dim == 1024 and cfg.data.channels == "rgb"
    assert cfg.train.epochs == 3
    assert cfg.train.learning_rate == pytest.approx(2e-4)
    assert cfg.model.arch == (2, 2, 4)


def test_int_is_accepted_for_float():
    assert build_config({"train": {"learning_rate": 1}}).train.learning_rate == 1.0


@pytest.mark.parametrize("values, overrides, message", [
    ({"model": {"n_heads": 4}}, [], "unknown config key 'model.n_heads' (did you mean 'model.n_head'?)"),
    ({"modle": {}}, [], "unknown config key 'modle'"),
    ({}, ["train.epochs=ten"], "config key 'train.epochs'"),
    ({}, ["train.epochs"], "must look like section.key=value"),
    ({"test": {"nms_method": "fast"}}, [], "'test.nms_method'"),
    ({"model": {"arch": [2, 2]}}, [], "'model.arch': expected 3 values"),
    ({"model": {"arch": [2, 2, 3]}}, [], "'model.regression_range' needs 4 ranges"),
    ({"data": {"feat_stride": 0}}, [], "'data.feat_stride' must be positive"),
    ({"train": {"batch_size": True}}, [], "'train.batch_size'"),
])
def test_bad_config_is_an_error_naming_the_key(values, overrides, message):
    with pytest.raises(RgbtadError) as err:
        build_config(values, overrides)
    assert message in str(err.value)


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(RgbtadError, match="missing.yaml: config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epochs: [}\n")
    with pytest.raises(RgbtadError, match="bad.yaml: not valid YAML"):
        load_config(bad)
    typo = tmp_path / "typo.yaml"
    typo.write_text("train:\n  epoch: 3\n")
    with pytest.raises(RgbtadError, match=r"typo.yaml: unknown config key 'train.epoch'"):
        load_config(typo)


def test_save_and_reload_round_trip(tmp_path):
    cfg = build_config({"data": {"crop_ratio": None}}, ["model.n_mha_win_size=[9,9,9,9,9,-1]"])
    save_config(cfg, tmp_path / "resolved.yaml")
    again = load_config(tmp_path / "resolved.yaml")
    assert again == cfg


def test_shipped_configs_are_valid():
    from pathlib import Path

    import yaml

    def leaves(values, prefix=""):
        for key, value in values.items():
            if isinstance(value, dict):
                yield from leaves(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value

    def plain(value):  # YAML gives lists where the config holds tuples
        return [plain(v) for v in value] if isinstance(value, (list, tuple)) else value

    loaded = []
    for path in sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml")):
        if path.name.startswith(("ablate_", "backbone_")):  # `rgbtad ablate` grids: tests/test_ablate.py;
            continue  # `rgbtad train-backbone` configs: tests/test_backbone_training.py
        cfg = load_config(path)
        # every value the file writes is the value a run uses: none dropped, none replaced by a preset
        resolved = cfg.to_dict()
        for dotted, value in leaves(yaml.safe_load(path.read_text()) or {}):
            section, key = dotted.split(".")
            assert plain(resolved[section][key]) == plain(value), (path.name, dotted, resolved[section][key], value)
        loaded.append(path.name)
    assert {"thumos_i3d.yaml", "thumos_i3d_rgb.yaml", "toy_features.yaml"} <= set(loaded), loaded


def test_every_numeric_key_has_a_range_and_the_readme_lists_it():
    import dataclasses
    import typing
    from pathlib import Path

    from rgbtad.config import RANGES, Config
    from rgbtad.core.ranges import describe_range

    numeric = {f"{section.name}.{name}" for section in dataclasses.fields(Config)
               for name, hint in typing.get_type_hints(section.default_factory).items()
               if hint is not bool and ("int" in str(hint) or "float" in str(hint))}
    assert numeric - set(RANGES) == {"model.n_mha_win_size"}  # any window: <= 1 means global
    assert set(RANGES) <= numeric
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    missing = [key for key, interval in RANGES.items() if f"`{key}` {describe_range(interval)}" not in readme]
    assert not missing


@pytest.mark.parametrize("override, message", [
    ("train.ema_decay=2", "'train.ema_decay' must be in [0, 1), got 2.0"),
    ("train.weight_decay=-1", "'train.weight_decay' must be >= 0"),
    ("train.learning_rate=.nan", "'train.learning_rate' must be positive, got nan"),
    ("train.clip_grad_l2norm=.inf", "'train.clip_grad_l2norm' must be finite"),
    ("test.tiou_thresholds=[0.3,1.5]", "'test.tiou_thresholds' must be in (0, 1], got 1.5"),
    ("data.crop_ratio=[1.0,0.5]", "'data.crop_ratio' must satisfy low <= high"),
])
def test_values_out_of_range_name_the_key(override, message):
    with pytest.raises(RgbtadError) as err:
        build_config({}, [override])
    assert message in str(err.value)


def test_legacy_key_is_ignored_with_a_note_wherever_it_comes_from(tmp_path, caplog):
    import logging

    old = tmp_path / "config.yaml"  # as a run directory of an earlier version holds it
    old.write_text("model:\n  max_buffer_len_factor: 6.0\n  n_head: 8\n")
    values = {"model": {"max_buffer_len_factor": 1.0}}
    with caplog.at_level(logging.INFO, logger="rgbtad.config"):
        from_file = load_config(old)
        from_values = build_config(values)
        from_override = build_config({}, ["model.max_buffer_len_factor=6"])
    assert from_file.model.n_head == 8 and "max_buffer_len_factor" not in from_file.to_dict()["model"]
    assert from_values == from_override == build_config()
    assert values == {"model": {"max_buffer_len_factor": 1.0}}  # the caller's mapping is left as it is
    notes = [r.getMessage() for r in caplog.records]
    assert len(notes) == 3 and all("'model.max_buffer_len_factor' is no longer used and is ignored" in n
                                   for n in notes)
    assert notes[0].startswith(f"{old}: ") and "\n" not in notes[0]
    save_config(from_file, tmp_path / "again.yaml")
    assert "max_buffer_len_factor" not in (tmp_path / "again.yaml").read_text()
