import pytest
import torch
from torch_geometric.data import Batch
from train_helpers import TinyModel, molecules, splits

from equigraph.models import build_model
from equigraph.train import TaskModule, Target, fit_statistics, load_config, resolve_targets
from equigraph.train.targets import pair

GAP = Target("gap", "y", "y", "graph", "eV")


def test_forward_returns_the_models_outputs_in_physical_units():
    torch.manual_seed(0)
    model = build_model({"name": "egnn", "hidden_channels": 8, "num_layers": 1, "out_channels": 1})
    data = splits()
    targets = resolve_targets(load_config({"model": {"name": "egnn"}, "data": {"name": "synthetic"}}), data, model)
    summary = fit_statistics(targets, data, model)
    y = data.values("y").double()
    assert summary["synthetic"]["mean"] == pytest.approx(y.mean(0).tolist())
    # The statistics live in the model (buffers), not in the Lightning module.
    assert torch.allclose(model.readout.shift.double(), y.mean(0), atol=1e-5)
    module = TaskModule(model, targets)
    batch = Batch.from_data_list(molecules(4))
    assert torch.equal(module(batch)["y"], model(batch)["y"])


def test_loss_is_the_weighted_sum_of_normalised_errors():
    torch.manual_seed(0)
    targets = [Target("gap", "y", "y", "graph", "eV", loss="l1", weight=2.0, scale=0.5)]
    module = TaskModule(TinyModel(), targets)
    batch = Batch.from_data_list(molecules(4))
    pred = module(batch)["y"]
    expected = 2.0 * (pred - batch.y).abs().mean() / 0.5
    torch.testing.assert_close(module.training_step(batch, 0), expected)


def test_extensive_targets_are_compared_per_atom():
    batch = Batch.from_data_list(molecules(3))
    t = Target("e", "y", "y", "graph", "eV", extensive=True)
    pred, true = pair(t, {"y": batch.y + 1.0}, batch)
    natoms = torch.bincount(batch.batch).unsqueeze(-1).float()
    torch.testing.assert_close(pred - true, 1.0 / natoms)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"optimizer": "sgd"}, "optimizer"),
        ({"scheduler": "step"}, "scheduler"),
        ({"lr": 0.0}, "lr"),
        ({"targets": []}, "at least one target"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    kwargs = {"targets": [GAP], **kwargs}
    with pytest.raises(ValueError, match=match):
        TaskModule(TinyModel(), **kwargs)


def test_unknown_loss_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown loss 'l3'; known: huber, l1, mse"):
        TaskModule(TinyModel(), [Target("gap", "y", "y", "graph", "eV", loss="l3")])


def test_missing_model_output_and_data_key_are_errors():
    module = TaskModule(TinyModel(), [Target("gap", "energy", "y", "graph", "eV")])
    batch = Batch.from_data_list(molecules(2))
    with pytest.raises(ValueError, match="returns no 'energy' for target 'gap'"):
        module.training_step(batch, 0)
    module = TaskModule(TinyModel(), [GAP])
    del batch.y
    with pytest.raises(ValueError, match="no 'y' to train target 'gap'"):
        module.training_step(batch, 0)


def test_metric_unit_conversion():
    t = Target("e", "y", "y", "graph", "eV", metric_unit="meV")
    assert t.metric_factor == 1000.0 and t.reported_unit == "meV"
    f = Target("f", "forces", "forces", "node", "eV/Å", metric_unit="meV")
    assert f.metric_factor == 1000.0 and f.reported_unit == "meV/Å"
    e = Target("e", "energy", "energy", "graph", "eV", metric_unit="meV", extensive=True)
    assert e.reported_unit == "meV/atom"


@pytest.mark.parametrize("scheduler", ["cosine", "plateau", "none"])
def test_optimizer_and_schedule(scheduler):
    module = TaskModule(TinyModel(), [GAP], optimizer="adamw", lr=1e-3, weight_decay=1e-16, scheduler=scheduler,
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

    from equigraph.train import build_trainer

    cfg = load_config(tiny_config(tmp_path, ema_decay=0.999, early_stopping_patience=3, gradient_clip_val=5.0))
    trainer, *_ = build_trainer(cfg, tmp_path, grad_in_eval=False)
    stop = [c for c in trainer.callbacks if isinstance(c, EarlyStopping)]
    assert len(stop) == 1 and stop[0].patience == 3 and stop[0].monitor == "val_loss"
    assert any(isinstance(c, EMAWeightAveraging) for c in trainer.callbacks)
    assert trainer.gradient_clip_val == 5.0
    with pytest.raises(ValueError, match="ema_decay"):
        build_trainer(load_config(tiny_config(tmp_path, ema_decay=1.5)), tmp_path, grad_in_eval=False)


def test_fit_statistics_fits_per_element_references_for_energies():
    from equigraph.datasets.registry import DataSplits, TargetInfo
    from train_helpers import CONTRIBUTION

    parts = [molecules(n, seed) for n, seed in ((60, 0), (8, 1), (8, 2))]
    for part in parts:
        for d in part:
            d.energy = torch.tensor([sum(CONTRIBUTION[int(a)] for a in d.z)])
    data = DataSplits(*parts, targets={"energy": TargetInfo("energy", "graph", "eV", output="y", extensive=True)})
    model = build_model({"name": "egnn", "hidden_channels": 8, "num_layers": 1, "out_channels": 1, "atom_ref": True})
    cfg = load_config({"model": {"name": "egnn"}, "data": {"name": "synthetic"}})
    targets = resolve_targets(cfg, data, model)
    fit_statistics(targets, data, model)
    ref = model.readout.atom_ref[:, 0]
    for z, value in CONTRIBUTION.items():
        assert float(ref[z]) == pytest.approx(value, abs=1e-4)
    assert float(model.readout.shift) == 0.0  # extensive: no per-graph offset
    no_ref = build_model({"name": "egnn", "hidden_channels": 8, "num_layers": 1, "out_channels": 1})
    with pytest.raises(ValueError, match="atom_ref: true"):
        fit_statistics(resolve_targets(cfg, data, no_ref), data, no_ref)


def test_targets_are_checked_against_the_model_declaration():
    from train_helpers import splits as make_splits

    data = make_splits()
    cfg = load_config({"model": {"name": "egnn"}, "data": {"name": "synthetic"},
                       "targets": {"synthetic": {"output": "forces"}}})
    model = build_model({"name": "egnn", "hidden_channels": 8, "num_layers": 1, "out_channels": 1})
    with pytest.raises(ValueError, match="returns no 'forces'.*force_field"):
        resolve_targets(cfg, data, model)
    cfg["targets"] = {"nope": {}}
    with pytest.raises(ValueError, match="the dataset has no target 'nope'"):
        resolve_targets(cfg, data, model)
    cfg["targets"] = {"synthetic": {"weight": -1}}
    with pytest.raises(ValueError, match="weight must be a non-negative number"):
        resolve_targets(cfg, data, model)
    cfg["targets"] = {"synthetic": {"metric_unit": "meV"}}
    cfg["train"]["metric_unit"] = None
    data.targets["synthetic"] = type(data.targets["synthetic"])("y", "graph", "D")
    with pytest.raises(ValueError, match="cannot convert 'D' to 'meV'"):
        resolve_targets(cfg, data, model)


def test_mse_metric_and_its_unit():
    t = Target("pos", "pos", "target_pos", "node", "", metric="mse")
    assert t.error(torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 0.0]])) == pytest.approx(2.5)
    e = Target("e", "energy", "energy", "graph", "eV", metric_unit="meV", metric="mse")
    assert e.reported_unit == "(meV)^2"
    cfg = load_config({"model": {"name": "egnn"}, "data": {"name": "synthetic"},
                       "targets": {"synthetic": {"metric": "rmse"}}})
    model = build_model({"name": "egnn", "hidden_channels": 8, "num_layers": 1, "out_channels": 1})
    with pytest.raises(ValueError, match="targets.synthetic.metric must be one of mae, mse"):
        resolve_targets(cfg, splits(), model)


def test_progress_bar_counts_epochs_from_one(monkeypatch):
    # Issue: epochs were numbered from 0 in the progress bar and from 1 in the plot.
    from types import SimpleNamespace

    from lightning.pytorch.callbacks import TQDMProgressBar

    from equigraph.train.callbacks import EpochProgressBar

    bar = EpochProgressBar()
    bar.train_progress_bar = bar.init_train_tqdm()
    monkeypatch.setattr(TQDMProgressBar, "total_train_batches", property(lambda self: 3))
    bar.on_train_epoch_start(SimpleNamespace(current_epoch=0, max_epochs=6), None)
    assert bar.train_progress_bar.desc.startswith("Epoch 1/6")
    bar.train_progress_bar.close()


def test_epoch_metrics_are_the_weighted_means_of_the_steps(tmp_path):
    import csv

    import lightning.pytorch as pl
    from lightning.pytorch.loggers import CSVLogger
    from torch_geometric.loader import DataLoader

    class Record(pl.Callback):
        def __init__(self):
            self.train, self.val = [], []

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.train.append((float(outputs["loss"]), batch.num_graphs, trainer.current_epoch))

        def on_validation_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0):
            if not trainer.sanity_checking:
                pred, true = pair(GAP, module(batch), batch)
                self.val.append(((pred - true).abs().mean().item(), batch.num_graphs, trainer.current_epoch))

    torch.manual_seed(0)
    data = splits(22, 11, 4)
    record = Record()
    module = TaskModule(TinyModel(), [GAP], lr=1e-2)
    trainer = pl.Trainer(max_epochs=2, logger=CSVLogger(tmp_path, name="logs", version=""), callbacks=[record],
                         log_every_n_steps=2, enable_progress_bar=False, enable_checkpointing=False,
                         enable_model_summary=False, accelerator="cpu")
    trainer.fit(module, DataLoader(data.train, batch_size=4, shuffle=True), DataLoader(data.val, batch_size=4))
    with open(tmp_path / "logs" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))

    def logged(key):
        return [(int(r["epoch"]), int(r["step"]), float(r[key])) for r in rows if r.get(key)]

    def mean(items, epoch):
        chosen = [(v, g) for v, g, e in items if e == epoch]
        return sum(v * g for v, g in chosen) / sum(g for _, g in chosen)

    for epoch in (0, 1):  # 6 batches of 4, 4, 4, 4, 4, 2 graphs
        (train,) = [v for e, _, v in logged("train_loss_epoch") if e == epoch]
        assert train == pytest.approx(mean(record.train, epoch), rel=1e-5)
        (val,) = [v for e, _, v in logged("val_mae") if e == epoch]
        assert val == pytest.approx(mean(record.val, epoch), rel=1e-5)
        assert [v for e, _, v in logged("val_gap_mae") if e == epoch] == [val]
    # Step values every log_every_n_steps steps, as Lightning writes them.
    steps = logged("train_loss_step")
    assert [s for _, s, _ in steps] == [1, 3, 5, 7, 9, 11]
    by_step = [v for v, _, _ in record.train]
    assert all(v == pytest.approx(by_step[s], rel=1e-6) for _, s, v in steps)
