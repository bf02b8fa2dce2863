import re

import pytest
import torch
from torch_geometric.data import Batch
from train_helpers import TinyModel, splits, tiny_config

from equigraph.train import NonFiniteLossError, evaluate, fit, load_checkpoint, read_metrics


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short run shared by the tests that only inspect its outputs."""
    torch.manual_seed(0)
    tmp = tmp_path_factory.mktemp("fit")
    data = splits()
    model = TinyModel()
    before = evaluate(_wrap(model, data), splits=data)["mae"][0]
    cfg = tiny_config(tmp, max_epochs=8, lr=1e-2, ema_decay=0.9, gradient_clip_val=10.0)
    cfg["data"]["batch_size"] = 8
    result = fit(cfg, splits=data, model=model)
    return result, data, model, before


def _wrap(model, data):
    from equigraph.train import PropertyModule, target_statistics

    mean, mad = target_statistics(data.targets())
    return PropertyModule(model, mean=mean, mad=mad, unit=data.unit)


def test_training_reduces_loss_and_error(trained):
    result, data, model, before = trained
    curve = read_metrics(result.metrics_csv)
    train_loss = [v for _, v in curve["train_loss"]]
    assert len(train_loss) == result.epochs == 8
    assert train_loss[-1] < 0.7 * train_loss[0]
    assert result.test_mae < before
    assert result.test_mae < result.baseline_mae
    assert result.unit == "eV" and result.num_train == len(data.train)
    assert result.seconds_per_epoch > 0 and result.graphs_per_second > 0


def test_outputs_written(trained):
    result, *_ = trained
    from pathlib import Path

    png = Path(result.plot).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert (Path(result.out_dir) / "result.json").is_file()
    assert Path(result.checkpoint).name == "best.ckpt"


def test_checkpoint_round_trip_restores_weights_and_normalisation(trained):
    result, data, _, _ = trained
    fresh = load_checkpoint(result.checkpoint, model=TinyModel())
    ckpt = torch.load(result.checkpoint, weights_only=False)
    # The normalisation comes back from the checkpoint, not from defaults.
    assert torch.allclose(fresh.y_mean, ckpt["state_dict"]["y_mean"])
    assert fresh.y_mean.item() != 0.0 and fresh.y_mad.item() != 1.0
    # evaluate() on the restored module reproduces the test MAE of the run.
    restored = evaluate(fresh, splits=data)
    assert restored["mae"][0] == pytest.approx(result.test_mae, rel=1e-4)
    again = load_checkpoint(result.checkpoint, model=TinyModel())
    batch = Batch.from_data_list(data.test)
    with torch.no_grad():
        assert torch.equal(fresh(batch), again(batch))


def test_ema_weights_are_checkpointed(trained):
    result, *_ = trained
    ckpt = torch.load(result.checkpoint, weights_only=False)
    # EMAWeightAveraging stores the averaged weights as the state_dict and keeps the raw ones.
    assert "current_model_state" in ckpt
    key = next(k for k in ckpt["state_dict"] if k.startswith("model."))
    assert not torch.equal(ckpt["state_dict"][key], ckpt["current_model_state"][key])


def test_non_finite_loss_stops_with_epoch_and_batch(tmp_path):
    data = splits(n_train=16)
    data.train[5].pos[0, 0] = float("nan")
    cfg = tiny_config(tmp_path, max_epochs=3)
    cfg["data"]["batch_size"] = 16
    with pytest.raises(NonFiniteLossError, match=re.escape("at epoch 0, batch 0")):
        fit(cfg, splits=data, model=TinyModel())


def test_evaluate_rejects_unknown_split(trained):
    result, data, *_ = trained
    with pytest.raises(ValueError, match="split"):
        evaluate(load_checkpoint(result.checkpoint, model=TinyModel()), split="holdout", splits=data)


def test_missing_checkpoint_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.ckpt")


def test_empty_split_is_an_error():
    with pytest.raises(ValueError, match="val split is empty"):
        splits(n_val=0)


def test_predict_molecules_rejects_bad_input(trained):
    from torch_geometric.data import Data

    from equigraph.train import predict_molecules

    result, *_ = trained
    module = load_checkpoint(result.checkpoint, model=TinyModel())
    with pytest.raises(ValueError, match="no graphs"):
        predict_molecules(module, [])
    with pytest.raises(ValueError, match=r"molecules\[0\]: missing 'pos'"):
        predict_molecules(module, [Data(z=torch.tensor([6, 1]))])


def test_checkpoint_of_another_architecture_is_a_clear_error(trained):
    result, *_ = trained
    with pytest.raises(ValueError, match="does not fit the current model code"):
        load_checkpoint(result.checkpoint, model=TinyModel(hidden=8))
