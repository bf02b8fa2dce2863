"""From a configuration to a trained, tested, saved model; resuming; evaluating.

Every run writes into a new folder ``OUT_DIR/version_N`` (the next free ``N``), so a
second run never deletes or overwrites the files of an earlier one; ``resume=RUN_DIR``
continues a run in its own folder from ``checkpoints/last.ckpt`` (weights, optimiser,
scheduler, epoch, EMA). The configuration is validated, the model built and the data
loaded *before* any folder is created.
"""
from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import lightning.pytorch as pl
import torch
import yaml
from lightning.pytorch.callbacks import EarlyStopping, EMAWeightAveraging, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch_geometric.loader import DataLoader

from equigraph.data import keys as K
from equigraph.datasets.registry import DataSplits, build_splits
from equigraph.models import io as model_io
from equigraph.models.force_field import ForceField
from equigraph.train.callbacks import EpochProgressBar, EpochTimer, LearningCurve, NonFiniteLoss
from equigraph.train.config import DEFAULTS, apply_overrides, load_config, validate_config
from equigraph.train.data import SplitsDataModule
from equigraph.train.padding import BucketPadding
from equigraph.train.module import TaskModule, _build_model
from equigraph.registry import spec_of
from equigraph.train.targets import Target, fit_statistics, pair, resolve_targets

#: Environment variable through which DDP workers (re-launched scripts) find rank 0's run folder.
_RUN_DIR_ENV = "EQUIGRAPH_RUN_DIR"
#: ``data`` keys that configure the loaders; the rest are the dataset's own options.
LOADER_KEYS = ("name", "batch_size", "eval_batch_size", "num_workers", "loader", "pad_buckets")
#: Overrides ``evaluate`` accepts: where the data lives and how it is batched, nothing that
#: changes what the model is scored on.
EVALUATE_OVERRIDES = ("data.root", "data.batch_size", "data.eval_batch_size", "data.num_workers", "data.loader")


@dataclass
class FitResult:
    """What a finished run produced; also written to ``RUN_DIR/result.json``.

    ``test_mae``, ``val_mae`` and ``baseline_mae`` are the first target's metric (its MAE,
    or its MSE with ``metric: mse``); ``metrics`` has every target's."""

    out_dir: str
    checkpoint: str
    model_file: str
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
    metrics: dict = field(default_factory=dict)


def dataset_options(data_cfg: dict) -> dict:
    """The ``data`` section less the loader keys: the options of the dataset's builder
    (``name`` stays: it picks the dataset)."""
    return {k: v for k, v in data_cfg.items() if k not in LOADER_KEYS[1:]}


def new_run_dir(out_dir: str | Path) -> Path:
    """``out_dir/version_N`` with the next free ``N`` (created)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    taken = [int(m.group(1)) for p in out_dir.iterdir() if (m := re.fullmatch(r"version_(\d+)", p.name))]
    for n in range(max(taken, default=-1) + 1, max(taken, default=-1) + 1000):
        run = out_dir / f"version_{n}"
        try:
            run.mkdir()
            return run
        except FileExistsError:  # another process took it
            continue
    raise ValueError(f"out_dir: could not create a new version folder in {str(out_dir)!r}")


def build_trainer(config: dict, run_dir: str | Path, grad_in_eval: bool) -> tuple[pl.Trainer, EpochTimer, ModelCheckpoint]:
    """A Lightning ``Trainer`` with checkpoints, CSV log, learning curve, NaN stop, optional
    EMA and early stopping, from the ``train`` section."""
    train = config["train"]
    run_dir = Path(run_dir)
    timer = EpochTimer()
    ckpt = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best", monitor="val_loss", mode="min",
                           save_last=True)
    title = f"{config['model'].get('name')} / {', '.join(config.get('targets') or []) or config['data'].get('name')}"
    callbacks: list[pl.Callback] = [NonFiniteLoss(), timer, ckpt, LearningCurve(run_dir / "learning_curve.png", title)]
    if train["ema_decay"] is not None:
        decay = float(train["ema_decay"])
        if not 0.0 < decay < 1.0:
            raise ValueError(f"train.ema_decay: must lie in (0, 1), got {decay}")
        callbacks.append(EMAWeightAveraging(decay=decay))
    if train["early_stopping_patience"] is not None:
        callbacks.append(EarlyStopping(monitor="val_loss", mode="min", patience=int(train["early_stopping_patience"]),
                                       check_finite=True))
    if train["progress_bar"]:
        callbacks.append(EpochProgressBar(refresh_rate=max(1, int(train["log_every_n_steps"]) // 5)))
    strategy = train["strategy"]
    if strategy == "ddp" and train["accelerator"] == "cpu":
        # NCCL needs GPUs; gloo is the CPU backend for multi-process runs.
        from lightning.pytorch.strategies import DDPStrategy

        strategy = DDPStrategy(process_group_backend="gloo")
    try:
        trainer = pl.Trainer(
            default_root_dir=run_dir,
            max_epochs=train["max_epochs"],
            max_time=train["max_time"],
            accelerator=train["accelerator"],
            devices=train["devices"],
            num_nodes=train["num_nodes"],
            strategy=strategy,
            precision=train["precision"],
            gradient_clip_val=train["gradient_clip_val"],
            logger=CSVLogger(save_dir=run_dir, name="logs", version=""),
            callbacks=callbacks,
            enable_progress_bar=bool(train["progress_bar"]),
            enable_model_summary=False,
            log_every_n_steps=int(train["log_every_n_steps"]),
            limit_train_batches=train["limit_train_batches"],
            check_val_every_n_epoch=int(train["check_val_every_n_epoch"]),
            deterministic=train["deterministic"],
            # Forces are gradients of the energy: validation and test need autograd.
            inference_mode=not grad_in_eval,
        )
    except (MisconfigurationError, ValueError, RuntimeError) as err:
        raise ValueError(f"train: {' '.join(str(err).split())}") from None
    return trainer, timer, ckpt


try:  # Lightning's own configuration error, reported as one line
    from lightning.fabric.utilities.exceptions import MisconfigurationError
except ImportError:  # pragma: no cover
    MisconfigurationError = ValueError


def check_machine(config: dict) -> None:
    """Settings this machine cannot run, reported before anything is built or written."""
    train = config["train"]
    if train["accelerator"] in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ValueError(f"train.accelerator={train['accelerator']}: no CUDA GPU is available on this machine "
                         "(use train.accelerator=cpu or auto)")
    if train["accelerator"] in ("gpu", "cuda") and isinstance(train["devices"], int) \
            and train["devices"] > torch.cuda.device_count():
        raise ValueError(f"train.devices={train['devices']}: this machine has {torch.cuda.device_count()} GPU(s)")


def _elements(splits: DataSplits) -> list[int]:
    data = splits.train
    full = getattr(getattr(data, "_data", None), K.Z, None)
    if full is not None:  # InMemoryDataset: all splits share one store
        return sorted(torch.unique(full).tolist())
    return sorted({int(z) for d in splits.graphs("train") for z in d[K.Z].tolist()})


def _metadata(config: dict, targets: list[Target], splits: DataSplits, custom_data: bool) -> dict:
    from equigraph import __version__

    return {
        "equigraph_version": __version__,
        "targets": {t.name: {"output": t.output, "key": t.key, "level": t.level, "unit": t.unit,
                             "metric_unit": t.metric_unit, "extensive": t.extensive} for t in targets},
        "featurizer": None if custom_data else config["data"].get("featurizer"),
        "elements": _elements(splits) if K.Z in splits.train[0] else None,
        "data": None if custom_data else copy.deepcopy(config["data"]),
        "config": copy.deepcopy(config),
    }


def fit(config: dict | str | Path | None = None, overrides: tuple[str, ...] | list[str] = (), *,
        splits: DataSplits | None = None, model: torch.nn.Module | None = None,
        resume: str | Path | None = None) -> FitResult:
    """Train, keep the best checkpoint (by ``val_loss``), test it, save ``model.pt`` and
    write ``result.json`` in a new ``OUT_DIR/version_N``.

    Args:
        config: a mapping or a YAML path (:func:`~equigraph.train.config.load_config`);
            with ``resume``, :obj:`None` (the run's own ``config.yaml``).
        overrides: dotted ``key=value`` strings; with ``resume`` only ``train.*`` keys.
        splits: data to train on instead of the dataset named in the config.
        model: a module instead of the config's registry model.
        resume: a run folder to continue from its ``checkpoints/last.ckpt``.
    """
    ckpt_path = None
    if resume is not None:
        run_dir = Path(resume)
        saved = run_dir / "config.yaml"
        ckpt_path = run_dir / "checkpoints" / "last.ckpt"
        if not saved.is_file() or not ckpt_path.is_file():
            raise ValueError(f"resume: {str(run_dir)!r} is not a run folder with config.yaml and checkpoints/last.ckpt")
        bad = [o for o in overrides if not o.strip().startswith("train.")]
        if bad:
            raise ValueError(f"resume: only train.* keys may change when resuming, got {bad}")
        config = validate_config(apply_overrides(yaml.safe_load(saved.read_text()), list(overrides)))
    else:
        if config is None:
            raise ValueError("fit: give a config (or resume=RUN_DIR)")
        config = load_config(config, overrides)
    check_machine(config)
    # Process-wide: "high" lets float32 matrix products use TF32 on GPUs that have it.
    torch.set_float32_matmul_precision(config["train"]["matmul_precision"])
    if config["train"]["num_threads"] is not None:
        # On a shared or small CPU, one intra-op thread per process avoids oversubscription.
        torch.set_num_threads(int(config["train"]["num_threads"]))
    pl.seed_everything(int(config["seed"]), workers=True, verbose=False)
    custom_data = splits is not None
    if model is not None:
        config["model"] = {"name": type(model).__name__}
    net = _build_model(model if model is not None else config["model"])
    if splits is None:
        splits = build_splits(dataset_options(config["data"]))
    targets = resolve_targets(config, splits, net)
    if ckpt_path is not None:
        # The loss scales fitted when the run started (the model's buffers come back with
        # its weights): a resumed run optimises the same loss.
        saved = torch.load(ckpt_path, map_location="cpu", weights_only=False).get("hyper_parameters", {})
        targets = [Target(**t) for t in saved.get("targets", [])] or targets
    elif config["train"]["fit_statistics"]:
        fit_statistics(targets, splits, net)
    if resume is None:
        inherited = os.environ.get(_RUN_DIR_ENV)
        if inherited and os.environ.get("LOCAL_RANK", "0") != "0":
            # A DDP worker that Lightning launched: it writes into the folder of rank 0.
            run_dir = Path(inherited)
        else:
            run_dir = new_run_dir(config["out_dir"])
            (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
            os.environ[_RUN_DIR_ENV] = str(run_dir)
    train = config["train"]
    module = TaskModule(net, targets, optimizer=train["optimizer"], lr=float(train["lr"]),
                        weight_decay=float(train["weight_decay"]), scheduler=train["scheduler"],
                        max_epochs=train["max_epochs"], min_lr=float(train["min_lr"]),
                        plateau_factor=train["plateau_factor"], plateau_patience=train["plateau_patience"],
                        config=config)
    device_loader = config["data"]["loader"] == "device"
    inner = net.model if isinstance(net, ForceField) else net
    data = SplitsDataModule(splits, batch_size=config["data"]["batch_size"],
                            eval_batch_size=config["data"]["eval_batch_size"],
                            num_workers=config["data"]["num_workers"], loader=config["data"]["loader"],
                            seed=int(config["seed"]), max_z=getattr(inner, "max_z", None),
                            graph=_graph_builder(inner) if device_loader else None,
                            pad=_padding(config["data"]["pad_buckets"], inner),
                            max_edge_length=getattr(inner, "supplied_edge_limit", None))
    module.trusted_inputs = device_loader  # every split is checked once when it is collated
    if train["compile"] is not False:
        if config["data"]["pad_buckets"] is not None:
            # One compiled graph per bucket shape (and train / eval mode): more than dynamo's
            # default limit of 8, past which it would fall back to eager without an error.
            import torch._dynamo.config as dynamo_config

            dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, 64)
        # In place: parameter names, checkpoints and model.pt stay those of the plain model.
        module.model.compile(**(train["compile"] if isinstance(train["compile"], dict) else {}))
    grad_in_eval = any(t.output in (K.FORCES, K.STRESS) for t in targets)
    trainer, timer, ckpt = build_trainer(config, run_dir, grad_in_eval)
    metrics_csv = run_dir / "logs" / "metrics.csv"
    earlier = None
    if ckpt_path is not None and metrics_csv.is_file():
        # Lightning's CSV logger starts metrics.csv afresh; keep the epochs before the resume.
        earlier = metrics_csv.with_name(f"metrics.before_resume_{len(list(metrics_csv.parent.glob('metrics.before_resume_*')))}.csv")
        metrics_csv.replace(earlier)
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    best = ckpt.best_model_path or ckpt.last_model_path
    if best:
        # Load by hand: with EMA, Trainer.test(ckpt_path=...) would restore the raw weights.
        state = torch.load(best, map_location=module.device, weights_only=False)["state_dict"]
        module.load_state_dict(state)
    # Validation metrics of the best weights (callback_metrics hold the last epoch's).
    validated = trainer.validate(module, datamodule=data, verbose=False)
    val_mae = float(validated[0].get(f"val_{targets[0].metric}", float("nan"))) if validated else float("nan")
    tested = trainer.test(module, datamodule=data, verbose=False)
    tested = tested[0] if tested else {}
    if earlier is not None and trainer.is_global_zero:
        trainer.logger.save()
        _prepend_metrics(earlier, metrics_csv)
    first = targets[0]
    model_file = run_dir / "model.pt"
    saveable = model is None or spec_of(model) is not None
    if trainer.is_global_zero and saveable:
        model_io.save(module.model, model_file, metadata=_metadata(config, targets, splits, custom_data),
                      overwrite=resume is not None)
    metrics = {t.name: {f"test_{t.metric}": float(tested.get(f"test_{t.name}_{t.metric}", float("nan"))),
                        "metric": t.metric, "unit": t.reported_unit, "loss_scale": t.scale}
               for t in targets}
    baseline = mean_predictor_error(first, splits)
    result = FitResult(
        out_dir=str(run_dir),
        checkpoint=str(best),
        model_file=str(model_file) if saveable else "",
        metrics_csv=str(run_dir / "logs" / "metrics.csv"),
        plot=str(run_dir / "learning_curve.png"),
        target=first.name,
        unit=first.reported_unit,
        test_mae=metrics[first.name][f"test_{first.metric}"],
        val_mae=val_mae,
        baseline_mae=baseline,
        epochs=trainer.current_epoch,
        seconds_per_epoch=timer.seconds_per_epoch,
        graphs_per_second=timer.graphs_per_second,
        num_train=len(splits.train),
        num_parameters=sum(p.numel() for p in module.model.parameters()),
        world_size=trainer.world_size,
        metrics=metrics,
    )
    if trainer.is_global_zero:
        (run_dir / "result.json").write_text(json.dumps(_json_safe(asdict(result)), indent=2) + "\n")
    return result


def _padding(growth, model):
    """``data.pad_buckets`` as a :class:`BucketPadding` (or :obj:`None`), with padding edges
    shorter than the model's cutoff."""
    if growth is None:
        return None
    from e3nn.nn import BatchNorm as E3nnBatchNorm

    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.modules.batchnorm._NormBase, E3nnBatchNorm)):
            raise ValueError(f"data.pad_buckets: the model normalises over the whole batch ({name or 'model'}: "
                             f"{type(module).__name__}), so padding atoms would change its real outputs; use a "
                             "per-graph norm (e.g. SEGNN norm='instance') or no padding")
    cutoff = getattr(model, "cutoff", None)
    return BucketPadding(growth, spacing=min(1.0, 0.5 * cutoff) if cutoff else 1.0)


def _graph_builder(model):
    """``model.graph`` as a once-per-split edge builder when the model declares that its
    forward builds its graph once from the input positions, else :obj:`None`."""
    if not getattr(model, "graph_from_input_positions", False):
        return None

    def build(batch):
        edge_index, shift, _ = model.graph(batch)
        return edge_index, shift

    return build


def _json_safe(value):
    """NaN / inf become null: result.json stays strict JSON."""
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _prepend_metrics(earlier: Path, metrics_csv: Path) -> None:
    import csv

    rows, fields = [], []
    for path in (earlier, metrics_csv):
        if not path.is_file():
            continue
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            fields += [c for c in reader.fieldnames or [] if c not in fields]
            rows += list(reader)
    with open(metrics_csv, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def mean_predictor_error(target: Target, splits: DataSplits) -> float:
    """The target's test metric (metric unit) for a reference that learns nothing: the train
    mean (per atom for extensive targets), zero for forces, the input positions for a
    position target."""
    test = splits.values(target.key, "test", target.level).double()
    if target.level == "node":
        ref = splits.values(K.POS, "test", "node").double() if target.output == K.POS else torch.zeros_like(test)
        err = test - ref
    else:
        train = splits.values(target.key, "train", target.level).double()
        if target.extensive:
            n_train = torch.tensor([d.num_nodes for d in splits.graphs("train")], dtype=torch.float64).reshape(-1, 1)
            n_test = torch.tensor([d.num_nodes for d in splits.graphs("test")], dtype=torch.float64).reshape(-1, 1)
            err = test / n_test - (train / n_train).mean(0)
        else:
            err = test - train.mean(0)
    err = err * target.metric_factor
    return float(err.abs().mean() if target.metric == "mae" else err.square().mean())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", **kwargs) -> TaskModule:
    """A :class:`TaskModule` restored from a Lightning checkpoint, in eval mode (for
    inspection; ``model.pt`` is the file to predict with)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} does not exist")
    try:
        module = TaskModule.load_from_checkpoint(path, map_location=map_location, weights_only=False, **kwargs)
    except (RuntimeError, KeyError, TypeError) as err:
        detail = " ".join(str(err).split())[:300]
        raise ValueError(f"checkpoint {str(path)!r} does not fit the current code: {detail}") from err
    return module.eval()


def _model_file(path: str | Path) -> Path:
    path = Path(path)
    return path / "model.pt" if path.is_dir() else path


def evaluate(model_or_path, split: str = "test", overrides: tuple[str, ...] | list[str] = (), *,
             splits: DataSplits | None = None, batch_size: int | None = None) -> dict:
    """MAE per target (metric units) and the mean-predictor MAE on a split of the data the
    model was trained on (rebuilt from its saved metadata), or on ``splits``.

    ``overrides`` may only relocate or re-batch the data (``data.root``, batch sizes):
    anything else would score the model on something it was not trained for.
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"split: expected 'train', 'val' or 'test', got {split!r}")
    model = model_io.load(_model_file(model_or_path)) if not isinstance(model_or_path, torch.nn.Module) else model_or_path
    meta = getattr(model, "metadata", {}) or {}
    for text in overrides:
        key = text.partition("=")[0].strip()
        if key not in EVALUATE_OVERRIDES:
            raise ValueError(f"evaluate: {key!r} cannot be overridden: the model is scored on the data and target it "
                             f"was trained on; allowed: {', '.join(EVALUATE_OVERRIDES)}")
    data_cfg = apply_overrides({"data": meta.get("data") or {}}, list(overrides))["data"]
    if splits is None:
        if not meta.get("data"):
            raise ValueError("evaluate: this model was trained on data passed in Python (fit(splits=...)); "
                             "pass the same splits= to evaluate it")
        splits = build_splits(dataset_options(data_cfg))
    targets = [Target(name=name, **{k: v for k, v in t.items()}) for name, t in meta.get("targets", {}).items()]
    if not targets:
        raise ValueError("evaluate: the model file records no targets")
    batch_size = batch_size or data_cfg.get("eval_batch_size") or data_cfg.get("batch_size") or DEFAULTS["data"]["batch_size"]
    errors = {t.name: [] for t in targets}
    model.eval()
    for batch in DataLoader(getattr(splits, split), batch_size=batch_size):
        out = model(batch)
        for t in targets:
            pred, true = pair(t, out, batch)  # the same pairing as in training
            err = (pred.detach() - true).double().reshape(-1)
            errors[t.name].append(err.abs() if t.metric == "mae" else err.square())
    result = {"split": split, "count": len(getattr(splits, split)), "targets": {}}
    for t in targets:
        factor = t.metric_factor if t.metric == "mae" else t.metric_factor ** 2
        value = float(torch.cat(errors[t.name]).mean()) * factor
        result["targets"][t.name] = {t.metric: value, "metric": t.metric, "unit": t.reported_unit,
                                     "baseline": mean_predictor_error(t, splits) if split == "test" else None}
    return result
