import pytest
import torch
from torch_geometric.data import Batch
from train_helpers import TinyModel, molecules

from equigraph.train import PropertyModule, mean_baseline_mae, target_statistics


def test_target_statistics_mean_mad():
    y = torch.tensor([[1.0, 5.0], [3.0, 5.0], [5.0, 5.0]])
    mean, mad = target_statistics(y)
    assert mean == pytest.approx([3.0, 5.0])
    # A constant column gets a unit scale instead of a division by zero.
    assert mad == pytest.approx([4.0 / 3.0, 1.0])


@pytest.mark.parametrize("bad, match", [(torch.empty(0, 1), "empty"), (torch.tensor([[1.0], [float("nan")]]), "NaN")])
def test_target_statistics_rejects_bad_targets(bad, match):
    with pytest.raises(ValueError, match=match):
        target_statistics(bad)


def test_forward_destandardises():
    torch.manual_seed(0)
    module = PropertyModule(TinyModel(), mean=[10.0], mad=[2.0], unit="eV")
    batch = Batch.from_data_list(molecules(4))
    raw = module.model(batch)["y"]
    assert torch.allclose(module(batch), raw * 2.0 + 10.0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"loss": "huber"}, "loss"),
        ({"optimizer": "sgd"}, "optimizer"),
        ({"scheduler": "step"}, "scheduler"),
        ({"lr": 0.0}, "lr"),
        ({"mad": [0.0]}, "mad"),
        ({"mean": [float("nan")]}, "mean"),
        ({"mean": [0.0, 1.0], "mad": [1.0]}, "lengths"),
        ({"target_index": [0, 1]}, "target_index"),
        ({"unit": "D", "metric_unit": "meV"}, "metric_unit"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PropertyModule(TinyModel(), **kwargs)


def test_wrong_output_width_is_an_error():
    module = PropertyModule(TinyModel(), mean=[0.0, 0.0], mad=[1.0, 1.0])
    with pytest.raises(ValueError, match="out_channels"):
        module(Batch.from_data_list(molecules(2)))


def test_missing_target_is_an_error():
    module = PropertyModule(TinyModel())
    batch = Batch.from_data_list(molecules(2))
    del batch.y
    with pytest.raises(ValueError, match="'y'"):
        module.training_step(batch, 0)


def test_metric_unit_conversion_in_mae():
    module = PropertyModule(TinyModel(), unit="eV", metric_unit="meV")
    assert module.metric_factor == 1000.0 and module.metric_unit == "meV"


def test_mean_baseline():
    train = torch.tensor([[0.0], [2.0]])
    test = torch.tensor([[1.0], [3.0]])
    assert mean_baseline_mae(train, test) == pytest.approx([1.0])


@pytest.mark.parametrize("scheduler", ["cosine", "plateau", "none"])
def test_optimizer_and_schedule(scheduler):
    module = PropertyModule(TinyModel(), optimizer="adamw", lr=1e-3, weight_decay=1e-16, scheduler=scheduler,
                            max_epochs=10, min_lr=1e-5)
    conf = module.configure_optimizers()
    opt = conf if scheduler == "none" else conf["optimizer"]
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["weight_decay"] == 1e-16
    if scheduler == "cosine":
        sched = conf["lr_scheduler"]["scheduler"]
        assert isinstance(sched, torch.optim.lr_scheduler.CosineAnnealingLR) and sched.T_max == 10
    elif scheduler == "plateau":
        assert conf["lr_scheduler"]["monitor"] == "val_loss"


def test_trainer_callbacks_follow_the_config(tmp_path):
    from lightning.pytorch.callbacks import EarlyStopping, EMAWeightAveraging
    from train_helpers import tiny_config

    from equigraph.train import build_trainer, load_config

    cfg = load_config(tiny_config(tmp_path, ema_decay=0.999, early_stopping_patience=3, gradient_clip_val=5.0))
    trainer, *_ = build_trainer(cfg, tmp_path)
    stop = [c for c in trainer.callbacks if isinstance(c, EarlyStopping)]
    assert len(stop) == 1 and stop[0].patience == 3 and stop[0].monitor == "val_mae"
    assert any(isinstance(c, EMAWeightAveraging) for c in trainer.callbacks)
    assert trainer.gradient_clip_val == 5.0
    with pytest.raises(ValueError, match="ema_decay"):
        build_trainer(load_config(tiny_config(tmp_path, ema_decay=1.5)), tmp_path)
