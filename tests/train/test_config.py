from pathlib import Path

import pytest

from equigraph.train import apply_overrides, load_config, parse_override
from equigraph.train.units import conversion_factor

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize(
    "text, path, value",
    [
        ("train.max_epochs=3", ["train", "max_epochs"], 3),
        ("train.lr=1e-3", ["train", "lr"], 1e-3),
        ("train.ema_decay=null", ["train", "ema_decay"], None),
        ("model.attention=false", ["model", "attention"], False),
        ("data.target=gap", ["data", "target"], "gap"),
        ("model.interaction_graph=full", ["model", "interaction_graph"], "full"),
        ("data.featurizer={name: charge_power, max_power: 1}", ["data", "featurizer"],
         {"name": "charge_power", "max_power": 1}),
        ("out_dir=runs/x=y", ["out_dir"], "runs/x=y"),
    ],
)
def test_parse_override(text, path, value):
    assert parse_override(text) == (path, value)


@pytest.mark.parametrize("text, match", [("train.max_epochs", "KEY=VALUE"), ("=3", "KEY=VALUE"),
                                         ("train..lr=1", "empty component"), ("a.b=[1", "not valid YAML")])
def test_bad_override(text, match):
    with pytest.raises(ValueError, match=match):
        parse_override(text)


def test_override_into_a_value_is_an_error():
    with pytest.raises(ValueError, match="not a section"):
        apply_overrides({"train": {"lr": 1.0}}, ["train.lr.x=2"])


def test_apply_overrides_does_not_mutate():
    cfg = {"train": {"lr": 1.0}}
    out = apply_overrides(cfg, ["train.lr=2", "model.name=egnn"])
    assert cfg == {"train": {"lr": 1.0}}
    assert out == {"train": {"lr": 2}, "model": {"name": "egnn"}}


@pytest.mark.parametrize("name", ["qm9_egnn.yaml", "qm9_egnn_demo.yaml"])
def test_shipped_configs_load(name):
    cfg = load_config(CONFIGS / name, ["train.max_epochs=3", "model.hidden_channels=32"])
    assert cfg["train"]["max_epochs"] == 3 and cfg["model"]["hidden_channels"] == 32
    assert cfg["model"]["name"] == "egnn" and cfg["data"]["name"] == "qm9"


def test_published_hyperparameters():
    cfg = load_config(CONFIGS / "qm9_egnn.yaml")
    m, d, t = cfg["model"], cfg["data"], cfg["train"]
    assert (m["num_layers"], m["hidden_channels"], d["batch_size"], t["max_epochs"]) == (7, 128, 96, 1000)
    assert (t["lr"], t["weight_decay"], t["scheduler"], t["loss"]) == (5e-4, 1e-16, "cosine", "l1")


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["train.max_epochs=0"], "max_epochs"),
        (["train.lr=-1"], "train.lr"),
        (["data.batch_size=0"], "batch_size"),
        (["train.learning_rate=1"], "unknown train keys"),
        (["optimiser=adam"], "unknown top-level"),
        (["model=egnn"], "model"),
        # Issue: values of the wrong type name the key and what is expected.
        (["train.gradient_clip_val=abc"], "train.gradient_clip_val must be a number or null, got 'abc'"),
        (["train.devices=abc"], "train.devices must be a positive integer, -1, 'auto' or a list"),
        (["train.devices=0"], "train.devices must be a positive integer"),
        (["train.accelerator=tpu7"], "train.accelerator must be auto, cpu, gpu"),
        (["data.batch_size=8.5"], "data.batch_size must be an integer, got 8.5"),
        (["train.progress_bar=yes please"], "train.progress_bar must be true/false"),
        (["targets.gap=1"], "targets.gap must be a mapping"),
        (["train.max_time=5"], "train.max_time must be a string or a mapping or null"),
    ],
)
def test_invalid_configs(overrides, match):
    with pytest.raises(ValueError, match=match):
        load_config(CONFIGS / "qm9_egnn_demo.yaml", overrides)


def test_unknown_dataset_options_are_named():
    from equigraph.datasets import build_splits
    from equigraph.train.run import dataset_options

    cfg = load_config(CONFIGS / "qm9_egnn_demo.yaml", ["data.targets=gap"])
    with pytest.raises(ValueError, match="data: dataset 'qm9': unknown argument 'targets'"):
        build_splits(dataset_options(cfg["data"]))


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  name: egnn\n  hidden_channels: [64\n")
    with pytest.raises(ValueError, match=r"bad.yaml'?: line \d+, column \d+: YAML syntax error"):
        load_config(path)


def test_missing_model_name():
    with pytest.raises(ValueError, match="model.name"):
        load_config({"model": {}})


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_unit_conversion():
    assert conversion_factor("eV", "meV") == 1000.0
    assert conversion_factor("Ha", "eV") == pytest.approx(27.211386245988)
    assert conversion_factor("meV", None) == 1.0
    with pytest.raises(ValueError, match="cannot convert"):
        conversion_factor("D", "meV")
