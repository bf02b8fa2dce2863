"""From a configuration to a trained, evaluated checkpoint; loading checkpoints back."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EarlyStopping, EMAWeightAveraging, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from equigraph.data import keys as K
from equigraph.train.callbacks import EpochTimer, LearningCurve, NonFiniteLoss
from equigraph.train.config import load_config
from equigraph.train.data import DataSplits, PropertyDataModule, build_featurizer, build_splits
from equigraph.train.module import PropertyModule, mean_baseline_mae, target_statistics
from equigraph.train.units import conversion_factor


@dataclass
class FitResult:
    """What a finished run produced; also written to ``OUT_DIR/result.json``."""

    out_dir: str
    checkpoint: str
    metrics_csv: str
    plot: str
    target: str
    unit: str
    test_mae: float
    val_mae: float
    baseline_mae: float
    epochs: int
    seconds_per_epoch: float
    graphs_per_second: float
    num_train: int
    num_parameters: int
    world_size: int


def build_module(config: dict, splits: DataSplits, model: torch.nn.Module | None = None) -> PropertyModule:
    """The :class:`PropertyModule` of ``config``, its normalisation fitted on the train split.

    ``model`` replaces the registry model of ``config["model"]`` (then checkpoints need it
    passed to ``load_from_checkpoint`` again).
    """
    train = config["train"]
    mean, mad = target_statistics(splits.targets("train"))
    return PropertyModule(
        model if model is not None else config["model"],
        target=splits.target,
        unit=splits.unit,
        target_index=splits.target_index,
        mean=mean,
        mad=mad,
        loss=train["loss"],
        optimizer=train["optimizer"],
        lr=float(train["lr"]),
        weight_decay=float(train["weight_decay"]),
        scheduler=train["scheduler"],
        max_epochs=train["max_epochs"],
        min_lr=float(train["min_lr"]),
        plateau_factor=train["plateau_factor"],
        plateau_patience=train["plateau_patience"],
        metric_unit=train["metric_unit"],
        config=config,
    )


def build_trainer(config: dict, out_dir: str | Path) -> tuple[pl.Trainer, EpochTimer, ModelCheckpoint]:
    """A Lightning ``Trainer`` with checkpoints, CSV log, learning curve, NaN stop, optional
    EMA and early stopping, from the ``train`` section."""
    train = config["train"]
    out_dir = Path(out_dir)
    timer = EpochTimer()
    ckpt = ModelCheckpoint(dirpath=out_dir / "checkpoints", filename="best", monitor="val_mae", mode="min",
                           save_last=True)
    title = f"{config['model'].get('name')} / {config['data'].get('target')}"
    callbacks: list[pl.Callback] = [NonFiniteLoss(), timer, ckpt, LearningCurve(out_dir / "learning_curve.png", title)]
    if train["ema_decay"] is not None:
        decay = float(train["ema_decay"])
        if not 0.0 < decay < 1.0:
            raise ValueError(f"train.ema_decay: must lie in (0, 1), got {decay}")
        callbacks.append(EMAWeightAveraging(decay=decay))
    if train["early_stopping_patience"] is not None:
        callbacks.append(EarlyStopping(monitor="val_mae", mode="min", patience=int(train["early_stopping_patience"]),
                                       check_finite=True))
    if train["progress_bar"]:
        callbacks.append(TQDMProgressBar(refresh_rate=max(1, int(train["log_every_n_steps"]) // 5)))
    strategy = train["strategy"]
    if strategy == "ddp" and train["accelerator"] == "cpu":
        # NCCL needs GPUs; gloo is the CPU backend for multi-process runs.
        from lightning.pytorch.strategies import DDPStrategy

        strategy = DDPStrategy(process_group_backend="gloo")
    trainer = pl.Trainer(
        default_root_dir=out_dir,
        max_epochs=train["max_epochs"],
        accelerator=train["accelerator"],
        devices=train["devices"],
        num_nodes=train["num_nodes"],
        strategy=strategy,
        precision=train["precision"],
        gradient_clip_val=train["gradient_clip_val"],
        logger=CSVLogger(save_dir=out_dir, name="", version=""),
        callbacks=callbacks,
        enable_progress_bar=bool(train["progress_bar"]),
        enable_model_summary=False,
        log_every_n_steps=int(train["log_every_n_steps"]),
        limit_train_batches=train["limit_train_batches"],
        check_val_every_n_epoch=int(train["check_val_every_n_epoch"]),
        deterministic=train["deterministic"],
    )
    return trainer, timer, ckpt


def _clean_outputs(out_dir: Path) -> None:
    # A re-run into the same directory must not resume from, or be ranked against, old files.
    if rank_zero_only.rank != 0:
        return
    for stale in [*(out_dir / "checkpoints").glob("*.ckpt"), out_dir / "metrics.csv", out_dir / "hparams.yaml",
                  out_dir / "result.json"]:
        stale.unlink(missing_ok=True)


def fit(config: dict | str | Path, overrides: tuple[str, ...] | list[str] = (), *,
        splits: DataSplits | None = None, model: torch.nn.Module | None = None) -> FitResult:
    """Train, keep the best checkpoint (by ``val_mae``), test it, and write ``result.json``.

    ``config`` is a mapping or a YAML path (see :func:`~equigraph.train.config.load_config`);
    ``splits`` / ``model`` replace the dataset / registry model named in it (for tests and
    custom data).
    """
    config = load_config(config, overrides)
    out_dir = Path(config["out_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    _clean_outputs(out_dir)
    if config["train"]["num_threads"] is not None:
        # On a shared or small CPU, one intra-op thread per process avoids oversubscription.
        torch.set_num_threads(int(config["train"]["num_threads"]))
    pl.seed_everything(int(config["seed"]), workers=True, verbose=False)
    if model is not None:
        # The checkpoint must not claim the registry model of the file when another ran.
        config["model"] = {"name": type(model).__name__}
    if splits is None:
        splits = build_splits(config["data"])
    module = build_module(config, splits, model=model)
    data = PropertyDataModule(splits, batch_size=config["data"]["batch_size"],
                              eval_batch_size=config["data"]["eval_batch_size"],
                              num_workers=config["data"]["num_workers"])
    trainer, timer, ckpt = build_trainer(config, out_dir)
    trainer.fit(module, datamodule=data)
    best = ckpt.best_model_path or ckpt.last_model_path
    val_mae = float(ckpt.best_model_score) if ckpt.best_model_score is not None else float("nan")
    if best:
        # Load by hand: with EMA, Trainer.test(ckpt_path=...) would restore the raw weights.
        state = torch.load(best, map_location=module.device, weights_only=False)["state_dict"]
        module.load_state_dict(state)
    tested = trainer.test(module, datamodule=data, verbose=False)
    test_mae = float(tested[0]["test_mae"]) if tested else float("nan")
    factor = conversion_factor(splits.unit, config["train"]["metric_unit"])
    baseline = mean_baseline_mae(splits.targets("train"), splits.targets("test"))[0] * factor
    result = FitResult(
        out_dir=str(out_dir),
        checkpoint=str(best),
        metrics_csv=str(out_dir / "metrics.csv"),
        plot=str(out_dir / "learning_curve.png"),
        target=splits.target,
        unit=module.metric_unit,
        test_mae=test_mae,
        val_mae=val_mae,
        baseline_mae=float(baseline),
        epochs=trainer.current_epoch,
        seconds_per_epoch=timer.seconds_per_epoch,
        graphs_per_second=timer.graphs_per_second,
        num_train=len(splits.train),
        num_parameters=sum(p.numel() for p in module.model.parameters()),
        world_size=trainer.world_size,
    )
    if trainer.is_global_zero:
        (out_dir / "result.json").write_text(json.dumps(asdict(result), indent=2) + "\n")
    return result


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", **kwargs) -> PropertyModule:
    """A :class:`PropertyModule` with weights and normalisation restored, in eval mode.

    ``kwargs`` go to ``load_from_checkpoint`` (``model=`` for a run trained on a module that
    is not in the registry).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} does not exist")
    try:
        module = PropertyModule.load_from_checkpoint(path, map_location=map_location, weights_only=False, **kwargs)
    except RuntimeError as err:
        if "state_dict" not in str(err):
            raise
        # Parameters renamed or resized since the checkpoint was written.
        detail = " ".join(str(err).split())
        raise ValueError(f"checkpoint {str(path)!r} does not fit the current model code: {detail}") from err
    return module.eval()


def evaluate(module: PropertyModule, split: str = "test", splits: DataSplits | None = None) -> dict:
    """MAE (in the module's metric unit) and the mean-predictor MAE on a split of the data
    the module was trained on (rebuilt from the configuration in its checkpoint)."""
    if split not in ("train", "val", "test"):
        raise ValueError(f"split: expected 'train', 'val' or 'test', got {split!r}")
    if splits is None:
        config = module.hparams.get("config")
        if not config:
            raise ValueError("checkpoint: holds no run configuration, pass splits= explicitly")
        splits = build_splits(config["data"])
    data = getattr(splits, split)
    y = splits.targets(split)
    pred = module.predict_dataset(data)
    mae = (pred.double() - y.double()).abs().mean(dim=0) * module.metric_factor
    baseline = torch.tensor(mean_baseline_mae(splits.targets("train"), y)) * module.metric_factor
    return {"split": split, "target": module.hparams.target, "unit": module.metric_unit, "count": len(data),
            "mae": mae.tolist(), "baseline_mae": baseline.tolist()}


def featurizer_of(module: PropertyModule):
    """The featuriser the module's training data used (``None`` when it had none)."""
    config = module.hparams.get("config") or {}
    return build_featurizer(config.get("data", {}).get("featurizer"))


def predict_molecules(module: PropertyModule, molecules) -> torch.Tensor:
    """Predictions ``[M, T]`` (target's unit) for ``Data`` molecules with ``z`` and ``pos``,
    featurised like the training data."""
    featurizer = featurizer_of(module)
    data = []
    for i, mol in enumerate(molecules):
        for key in (K.Z, K.POS):
            if getattr(mol, key, None) is None:
                raise ValueError(f"molecules[{i}]: missing '{key}'")
        mol = mol.clone()
        data.append(featurizer(mol) if featurizer is not None else mol)
    return module.predict_dataset(data)

