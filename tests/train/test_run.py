import json
import re
from pathlib import Path

import pytest
import torch
from torch_geometric.data import Batch
from train_helpers import TinyModel, egnn_config, splits, tiny_config

from equigraph.models import load
from equigraph.train import NonFiniteLossError, evaluate, fit, load_checkpoint, read_metrics


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short run of a registry EGNN on the synthetic dataset, shared by the tests that
    only inspect its outputs."""
    torch.manual_seed(0)
    tmp = tmp_path_factory.mktemp("fit")
    cfg = egnn_config(tmp, max_epochs=8, lr=1e-2, ema_decay=0.9, gradient_clip_val=10.0)
    cfg["data"]["batch_size"] = 8
    result = fit(cfg)
    return result, cfg


def test_training_reduces_loss_and_error(trained):
    result, cfg = trained
    curve = read_metrics(result.metrics_csv)
    train_loss = [v for _, v in curve["train_loss"]]
    assert len(train_loss) == result.epochs == 8
    assert train_loss[-1] < 0.7 * train_loss[0]
    assert result.test_mae < result.baseline_mae
    assert result.unit == "eV" and result.num_train == 48
    assert result.seconds_per_epoch > 0 and result.graphs_per_second > 0
    assert result.metrics["synthetic"]["test_mae"] == result.test_mae


def test_outputs_written_in_a_version_folder(trained):
    result, cfg = trained
    run = Path(result.out_dir)
    assert run.parent == Path(cfg["out_dir"]) and run.name == "version_0"
    assert Path(result.plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for name in ("result.json", "config.yaml", "model.pt", "checkpoints/best.ckpt", "checkpoints/last.ckpt"):
        assert (run / name).is_file(), name
    assert Path(result.checkpoint).name == "best.ckpt"


def test_saved_model_predicts_in_physical_units_without_lightning(trained):
    result, _ = trained
    model = load(result.model_file)
    meta = model.metadata
    assert meta["targets"]["synthetic"]["unit"] == "eV" and meta["featurizer"] == "charge_power"
    assert meta["elements"] == [1, 6, 7, 8]
    # evaluate() on the saved model reproduces the run's test MAE, and the Lightning
    # checkpoint's module gives the same predictions.
    scored = evaluate(result.out_dir)
    assert scored["targets"]["synthetic"]["mae"] == pytest.approx(result.test_mae, rel=1e-4)
    module = load_checkpoint(result.checkpoint)
    data = splits(featurizer=None)
    from equigraph.models.predict import predict

    from equigraph.data.featurizers import ChargePower

    feat = Batch.from_data_list([ChargePower()(d.clone()) for d in data.test])
    with torch.no_grad():
        torch.testing.assert_close(predict(model, data.test)["y"], module(feat)["y"])


def test_ema_weights_are_checkpointed(trained):
    result, _ = trained
    ckpt = torch.load(result.checkpoint, weights_only=False)
    # EMAWeightAveraging stores the averaged weights as the state_dict and keeps the raw ones.
    assert "current_model_state" in ckpt
    key = next(k for k in ckpt["state_dict"] if k.startswith("model.") and "weight" in k)
    assert not torch.equal(ckpt["state_dict"][key], ckpt["current_model_state"][key])


def test_a_second_run_never_touches_the_first(trained, tmp_path):
    # Issue: `equigraph train` deleted the previous run's checkpoints before validating the
    # config; a typo destroyed a trained model.
    result, cfg = trained
    first = Path(result.out_dir)
    before = {p: p.stat().st_mtime_ns for p in first.rglob("*") if p.is_file()}
    bad = dict(cfg, targets={"gapp": {}})
    with pytest.raises(ValueError, match="no target 'gapp'"):
        fit(bad)
    assert sorted(p.name for p in Path(cfg["out_dir"]).iterdir()) == ["version_0"]
    second = fit(dict(cfg, train={**cfg["train"], "max_epochs": 1}))
    assert Path(second.out_dir).name == "version_1"
    assert {p: p.stat().st_mtime_ns for p in first.rglob("*") if p.is_file()} == before


def test_resume_continues_from_last_checkpoint(tmp_path):
    cfg = egnn_config(tmp_path, max_epochs=2)
    first = fit(cfg)
    resumed = fit(resume=first.out_dir, overrides=["train.max_epochs=4"])
    assert resumed.out_dir == first.out_dir and resumed.epochs == 4
    curve = read_metrics(resumed.metrics_csv)
    assert sorted({e for e, _ in curve["train_loss"]}) == [0, 1, 2, 3]
    # The same loss (scale and weights) after the resume: no jump at the seam.
    losses = dict(curve["train_loss"])
    assert losses[2] < 1.5 * losses[1]
    with pytest.raises(ValueError, match="only train.\\* keys"):
        fit(resume=first.out_dir, overrides=["model.hidden_channels=4"])
    with pytest.raises(ValueError, match="not a run folder"):
        fit(resume=tmp_path / "nothing")


def test_custom_module_and_data(tmp_path):
    torch.manual_seed(0)
    data = splits()
    result = fit(tiny_config(tmp_path, max_epochs=3, lr=1e-2), splits=data, model=TinyModel())
    assert result.model_file == ""  # not a registry model: nothing to rebuild it from
    assert result.test_mae == result.test_mae


def test_non_finite_loss_stops_with_epoch_and_batch(tmp_path):
    data = splits(n_train=16)
    data.train[5].pos[0, 0] = float("nan")
    cfg = tiny_config(tmp_path, max_epochs=3)
    cfg["data"]["batch_size"] = 16
    with pytest.raises(NonFiniteLossError, match=re.escape("at epoch 0, batch 0")):
        fit(cfg, splits=data, model=TinyModel())


def test_evaluate_refuses_what_contradicts_the_model(trained):
    # Issue: `evaluate CKPT data.target=homo` scored a gap model against HOMO labels.
    result, _ = trained
    with pytest.raises(ValueError, match="'data.target' cannot be overridden"):
        evaluate(result.out_dir, overrides=["data.target=homo"])
    with pytest.raises(ValueError, match="'model.hidden_channels' cannot be overridden"):
        evaluate(result.out_dir, overrides=["model.hidden_channels=64"])
    with pytest.raises(ValueError, match="split"):
        evaluate(result.out_dir, split="holdout")
    assert evaluate(result.out_dir, overrides=["data.eval_batch_size=5"])["count"] == 16


def test_evaluate_of_a_model_trained_on_custom_data_needs_that_data(tmp_path):
    data = splits()
    from equigraph.models import build_model

    model = build_model({"name": "egnn", "hidden_channels": 8, "num_layers": 1, "out_channels": 1})
    result = fit(tiny_config(tmp_path, max_epochs=1), splits=data, model=model)
    with pytest.raises(ValueError, match="trained on data passed in Python"):
        evaluate(result.out_dir)
    assert evaluate(result.out_dir, splits=data)["targets"]["synthetic"]["mae"] == pytest.approx(result.test_mae,
                                                                                                rel=1e-4)


def test_missing_checkpoint_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.ckpt")


def test_empty_split_is_an_error():
    with pytest.raises(ValueError, match="val split is empty"):
        splits(n_val=0)


def test_result_json_lists_every_target(trained):
    result, _ = trained
    record = json.loads((Path(result.out_dir) / "result.json").read_text())
    assert record["metrics"]["synthetic"]["unit"] == "eV" and record["model_file"].endswith("model.pt")
    # The validation metric of the best weights, not a NaN left by the test loop.
    assert record["val_mae"] is not None and record["val_mae"] > 0
