"""Plumbing of ``benchmarks/nbody.py``: every model trains through ``equigraph.train.fit``
on ``configs/nbody_egnn.yaml``, and the MSE it reports is the MSE of the saved best model.

Tiny simulated splits (8 / 4 / 4 trajectories, 10 steps per frame), one or two epochs:
this checks the wiring, not the accuracy.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from torch_geometric.data import Data

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks import nbody  # noqa: E402
from equigraph.data import keys as K  # noqa: E402
from equigraph.datasets.nbody import NBody  # noqa: E402
from equigraph.datasets.registry import DataSplits, TargetInfo, _append_squared_distance  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> DataSplits:
    root = tmp_path_factory.mktemp("nbody")
    parts = [NBody(root, split, sizes=(8, 4, 4), steps_per_frame=10, transform=_append_squared_distance)
             for split in ("train", "valid", "test")]
    # The same targets as the registry's nbody builder.
    return DataSplits(*parts, targets={"pos": TargetInfo(K.TARGET_POS, "node", "", output=K.POS)})


def _overrides(tmp_path, epochs=1, every=1):
    return [f"out_dir={tmp_path / 'runs'}", f"train.max_epochs={epochs}", f"train.check_val_every_n_epoch={every}",
            "data.batch_size=4", "data.eval_batch_size=4", "train.accelerator=cpu", "train.num_threads=1"]


def test_egnn_trains_through_the_trainer(tiny, tmp_path):
    log = tmp_path / "nbody_egnn.json"
    record = nbody.run("egnn", _overrides(tmp_path, epochs=2, every=2), splits=tiny, log_path=log, command="test")
    assert record["epochs_run"] == 2
    # Validation after every second epoch, as the protocol's every fifth.
    assert [p["epoch"] for p in record["curve"]] == [0, 1] and "valid" not in record["curve"][0]
    assert all(p["train"] > 0 for p in record["curve"])
    assert math.isfinite(record["best_val"]) and record["best_val"] == record["curve"][1]["valid"]
    assert record["best_epoch"] == 1
    # The trainer's test_loss, converted, is the MSE of the saved best model.
    assert record["test_at_best"] == pytest.approx(record["test_direct"], rel=1e-4)
    assert record["loss_scale"] > 0 and record["parameters"] > 0
    assert json.loads(log.read_text())["test_at_best"] == record["test_at_best"]
    assert (tmp_path / "nbody_egnn_metrics.csv").is_file()
    assert (Path(record["run_dir"]) / "model.pt").is_file()


@pytest.mark.parametrize("name", ["gnn", "rf"])
def test_baseline_trains_through_the_trainer(tiny, tmp_path, name):
    record = nbody.run(name, _overrides(tmp_path), splits=tiny)
    assert record["epochs_run"] == 1
    assert record["test_at_best"] == pytest.approx(record["test_direct"], rel=1e-4)


def test_baselines_declare_positions():
    config = nbody.load()
    for name in ("gnn", "rf"):
        model = nbody.build(name, config)
        assert set(model.outputs) == {K.POS} and model.outputs[K.POS].level == "node"


def test_run_rejects_a_loss_it_cannot_convert(tiny, tmp_path):
    with pytest.raises(ValueError, match="needs the one target pos with loss mse"):
        nbody.run("egnn", _overrides(tmp_path) + ["targets.pos.loss=l1"], splits=tiny)


def test_build_rejects_an_unknown_model():
    with pytest.raises(ValueError, match="model must be one of .*egnn.*gnn.*rf"):
        nbody.build("se3_transformer", nbody.load())


def test_linear_time_is_least_squares():
    g = torch.Generator().manual_seed(0)
    graphs = []
    for _ in range(3):
        pos, vel = (torch.randn(5, 3, generator=g, dtype=torch.float64) for _ in range(2))
        graphs.append(Data(**{K.POS: pos, K.VEL: vel, K.TARGET_POS: pos + 0.3 * vel}))
    splits = DataSplits(graphs, graphs, graphs, targets={"pos": TargetInfo(K.TARGET_POS, "node", "", output=K.POS)})
    assert nbody._linear_t(splits) == pytest.approx(0.3, rel=1e-12)


def test_command_line_overrides_only_what_was_given():
    args = nbody.parser().parse_args(["train", "--model", "gnn", "--epochs", "40",
                                      "--override", "train.ema_decay=0.999"])
    out = nbody.overrides_of(args)
    assert "train.max_epochs=40" in out and out[-1] == "train.ema_decay=0.999"
    assert not any(o.startswith(("seed=", "train.lr=", "data.batch_size=")) for o in out)
    config = nbody.load(out)
    assert config["train"]["lr"] == 5e-4 and config["data"]["batch_size"] == 100 and config["seed"] == 1
