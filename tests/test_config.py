import pytest

from labbook.config import PRESETS, load_config, parse_override, to_toml
from labbook.errors import UserError


def test_seed_preset_is_the_lab():
    config = load_config()
    assert (config.preset, config.train.epochs, config.train.batch_size) == ("seed", 20, 64)
    assert (config.train.optimizer, config.train.learning_rate, config.train.momentum) == ("sgd", 0.001, 0.9)
    assert (config.model.dropout, config.model.depth, config.train.record_every) == (0.5, [4, 8], 100)


def test_file_then_overrides_then_round_trip(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('preset = "fast"\n[train]\nepochs = 2\nlearning_rate = 1\n')
    config = load_config(path, overrides=[parse_override("train.seed=7"), parse_override("name=my-run")])
    assert config.preset == "fast" and config.train.epochs == 2 and config.train.seed == 7
    assert config.train.learning_rate == 1.0 and isinstance(config.train.learning_rate, float)
    assert config.train.optimizer == PRESETS["fast"]["train"]["optimizer"]
    saved = tmp_path / "saved.toml"
    saved.write_text(to_toml(config))
    assert load_config(saved) == config
    assert load_config(saved).hash() == config.hash()


def test_hash_changes_with_results_relevant_settings_only():
    base = load_config()
    assert load_config(overrides=[parse_override("train.seed=1")]).hash() != base.hash()
    assert load_config(overrides=[parse_override("name=other")]).hash() == base.hash()


@pytest.mark.parametrize("override, message", [
    ("train.epochz=3", "unknown key 'train.epochz'"),
    ("bogus=1", "unknown key 'bogus'"),
    ("train.epochs=three", "train.epochs must be int, got 'three'"),
    ("train.epochs=2.5", "train.epochs must be int"),
    ("train.epochs=true", "train.epochs must be int"),
    ("model.depth=[4, 'x']", r"model.depth\[1\] must be int"),
    ("train.optimizer='rmsprop'", "train.optimizer must be one of sgd, adam, adamw"),
    ("train.epochs=0", "train.epochs must be at least 1"),
    ("model.dropout=1.0", r"model.dropout must be in \[0, 1\)"),
    ("train=3", "train must be a table"),
])
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(UserError, match=message):
        load_config(overrides=[parse_override(override)])


def test_unknown_preset_and_bad_files(tmp_path):
    with pytest.raises(UserError, match="unknown preset 'turbo'"):
        load_config(preset="turbo")
    with pytest.raises(UserError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[train\nepochs = 1")
    with pytest.raises(UserError, match="broken.toml: not valid TOML"):
        load_config(broken)
