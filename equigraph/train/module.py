"""The Lightning module that trains any registry model on a graph- or node-level target."""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from equigraph.data import keys as K
from equigraph.train.units import conversion_factor

LOSSES = {"l1": nn.functional.l1_loss, "mse": nn.functional.mse_loss}
OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
SCHEDULERS = ("cosine", "plateau", "none")


def _as_vector(value: float | Sequence[float] | Tensor, name: str) -> Tensor:
    t = torch.as_tensor(value, dtype=torch.float64).reshape(-1)
    if t.numel() == 0:
        raise ValueError(f"{name}: must hold at least one value")
    if not torch.isfinite(t).all():
        raise ValueError(f"{name}: must be finite, got {t.tolist()}")
    return t


def target_statistics(targets: Tensor) -> tuple[list[float], list[float]]:
    """Mean and mean absolute deviation per column of ``targets`` ``[M, T]`` (the train split).

    The deviation of a constant column is replaced by 1 so that standardising never divides
    by zero.

    >>> target_statistics(torch.tensor([[1.0], [3.0]]))
    ([2.0], [1.0])
    """
    if targets.dim() == 1:
        targets = targets.unsqueeze(-1)
    if targets.numel() == 0:
        raise ValueError("targets: the train split is empty, cannot compute mean / MAD")
    if not torch.isfinite(targets).all():
        raise ValueError("targets: the train split holds NaN or inf targets")
    targets = targets.double()
    mean = targets.mean(dim=0)
    mad = (targets - mean).abs().mean(dim=0)
    mad = torch.where(mad > 0, mad, torch.ones_like(mad))
    return mean.tolist(), mad.tolist()


def _build_model(model: dict | nn.Module) -> nn.Module:
    if isinstance(model, nn.Module):
        return model
    if not isinstance(model, dict) or "name" not in model:
        raise ValueError(f"model: expected an nn.Module or a registry config with 'name', got {model!r}")
    from equigraph.models.registry import build_model

    return build_model(**model)


class PropertyModule(pl.LightningModule):
    r"""Trains a model whose ``forward(data)`` returns ``{"y": [G, T]}`` on standardised targets.

    The model predicts :math:`\hat z`, the target standardised with the train split's mean
    :math:`\mu` and mean absolute deviation :math:`s`; the loss compares :math:`\hat z` with
    :math:`(y - \mu) / s`, and :meth:`forward` returns :math:`\hat y = s \hat z + \mu` in the
    target's unit. :math:`\mu` and :math:`s` are buffers and hyperparameters, so a checkpoint
    restores the normalisation with the weights. Metrics (``val_mae``, ``test_mae``) are MAEs
    in ``metric_unit`` (default: the target's ``unit``).

    Args:
        model (dict or torch.nn.Module): a config for
            :func:`equigraph.models.registry.build_model` (``{"name": "egnn", ...}``; saved in
            the checkpoint) or a module (then pass ``model=`` again to ``load_from_checkpoint``).
        target (str): name of the target, for messages (default: ``"y"``).
        unit (str): unit of the target values in ``data.y`` (default: ``""``).
        target_index (int or list of int, optional): columns of ``data.y`` to fit; ``None``
            takes every column (default: ``None``).
        mean (float or list, optional): train-split mean per target column (default: ``0``).
        mad (float or list, optional): train-split mean absolute deviation (default: ``1``).
        loss (str): ``"l1"`` or ``"mse"`` on the standardised target (default: ``"l1"``).
        optimizer (str): ``"adamw"`` or ``"adam"`` (default: ``"adamw"``).
        lr (float): learning rate (default: ``5e-4``).
        weight_decay (float): weight decay (default: ``0``).
        scheduler (str): ``"cosine"`` (over ``max_epochs``), ``"plateau"`` (on ``val_loss``)
            or ``"none"`` (default: ``"cosine"``).
        max_epochs (int): length of the cosine schedule (default: ``100``).
        min_lr (float): final / lowest learning rate (default: ``0``).
        plateau_factor (float): factor of the plateau schedule (default: ``0.5``).
        plateau_patience (int): patience in epochs of the plateau schedule (default: ``10``).
        metric_unit (str, optional): unit in which MAEs are logged, e.g. ``"meV"`` for a target
            in ``"eV"`` (default: ``None``, the target's unit).
        config (dict, optional): the full run configuration, kept in the checkpoint so that
            ``evaluate`` and ``predict`` can rebuild data and featurisers (default: ``None``).

    Shapes:
        - **input:** a PyG ``Batch`` with ``y`` ``[G, T_all]`` (or ``[N, T_all]``).
        - **output:** ``[G, T]`` predictions in the target's unit.

    >>> import torch
    >>> class Mean(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.b = torch.nn.Parameter(torch.zeros(1))
    ...     def forward(self, data):
    ...         return {"y": self.b.expand(int(data.num_graphs), 1)}
    >>> from torch_geometric.data import Batch, Data
    >>> m = PropertyModule(Mean(), mean=[2.0], mad=[0.5], unit="eV")
    >>> m(Batch.from_data_list([Data(z=torch.ones(1, dtype=torch.long))])).tolist()
    [[2.0]]
    """

    def __init__(
        self,
        model: dict | nn.Module,
        *,
        target: str = "y",
        unit: str = "",
        target_index: int | list[int] | None = None,
        mean: float | Sequence[float] = 0.0,
        mad: float | Sequence[float] = 1.0,
        loss: str = "l1",
        optimizer: str = "adamw",
        lr: float = 5e-4,
        weight_decay: float = 0.0,
        scheduler: str = "cosine",
        max_epochs: int = 100,
        min_lr: float = 0.0,
        plateau_factor: float = 0.5,
        plateau_patience: int = 10,
        metric_unit: str | None = None,
        config: dict | None = None,
    ):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"loss: expected one of {sorted(LOSSES)}, got {loss!r}")
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: expected one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
        if scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler: expected one of {list(SCHEDULERS)}, got {scheduler!r}")
        if not lr > 0:
            raise ValueError(f"lr: must be positive, got {lr!r}")
        mean_t, mad_t = _as_vector(mean, "mean"), _as_vector(mad, "mad")
        if (mad_t <= 0).any():
            raise ValueError(f"mad: must be positive, got {mad_t.tolist()}")
        if mean_t.numel() != mad_t.numel():
            raise ValueError(f"mean / mad: lengths differ ({mean_t.numel()} vs {mad_t.numel()})")
        if isinstance(target_index, int):
            target_index = [target_index]
        if target_index is not None and len(target_index) != mean_t.numel():
            raise ValueError(
                f"target_index: {len(target_index)} columns but mean / mad hold {mean_t.numel()} values"
            )
        self.metric_factor = conversion_factor(unit, metric_unit)
        self.save_hyperparameters(ignore=["model"] if isinstance(model, nn.Module) else None)
        self.model = _build_model(model)
        self.target_index = target_index
        self.loss_fn = LOSSES[loss]
        self.register_buffer("y_mean", mean_t.float())
        self.register_buffer("y_mad", mad_t.float())

    @property
    def metric_unit(self) -> str:
        """Unit of the logged MAEs."""
        return self.hparams.metric_unit or self.hparams.unit

    def _target(self, batch) -> Tensor:
        y = getattr(batch, K.Y, None)
        if y is None:
            raise ValueError(f"batch: no '{K.Y}' attribute to train on (target {self.hparams.target!r})")
        if y.dim() == 1:
            y = y.unsqueeze(-1)
        if self.target_index is not None:
            y = y[:, self.target_index]
        return y.to(self.y_mean.dtype)

    def standardized(self, batch) -> Tensor:
        """The model's raw output ``"y"``: the prediction in standardised units."""
        out = self.model(batch)
        if not isinstance(out, dict) or K.Y not in out:
            raise ValueError(f"model: forward must return a dict with '{K.Y}', got {type(out).__name__}")
        pred = out[K.Y]
        if pred.dim() == 1:
            pred = pred.unsqueeze(-1)
        if pred.shape[-1] != self.y_mean.numel():
            raise ValueError(
                f"model: predicts {pred.shape[-1]} values per graph but the target has "
                f"{self.y_mean.numel()} (set the model's out_channels)"
            )
        return pred

    def forward(self, batch) -> Tensor:
        """Predictions in the target's unit, ``[G, T]``."""
        return self.standardized(batch) * self.y_mad + self.y_mean

    def _step(self, batch, stage: str) -> Tensor:
        y = self._target(batch)
        pred = self.standardized(batch)
        if pred.shape != y.shape:
            raise ValueError(f"model: prediction shape {tuple(pred.shape)} != target shape {tuple(y.shape)}")
        loss = self.loss_fn(pred, (y - self.y_mean) / self.y_mad)
        size = int(y.shape[0])
        sync = stage != "train"
        self.log(f"{stage}_loss", loss, batch_size=size, prog_bar=True, sync_dist=sync,
                 on_step=stage == "train", on_epoch=True)
        if stage != "train":
            mae = ((pred * self.y_mad + self.y_mean) - y).abs().mean() * self.metric_factor
            self.log(f"{stage}_mae", mae, batch_size=size, prog_bar=True, sync_dist=sync)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        return self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        return self._step(batch, "test")

    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        return self(batch)

    def configure_optimizers(self):
        hp = self.hparams
        # Fused Adam(W) updates all parameters in one kernel instead of a Python loop over
        # them: about 8% of an EGNN train step on CPU (benchmarks/results/egnn_speed.md).
        opt = OPTIMIZERS[hp.optimizer](self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay, fused=True)
        if hp.scheduler == "none":
            return opt
        if hp.scheduler == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=hp.max_epochs, eta_min=hp.min_lr)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, factor=hp.plateau_factor, patience=hp.plateau_patience, min_lr=hp.min_lr
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "val_loss", "interval": "epoch"}}

    @torch.no_grad()
    def predict_dataset(self, data: Iterable, batch_size: int = 128) -> Tensor:
        """Predictions ``[M, T]`` in the target's unit for a sequence of ``Data``, in eval mode."""
        from torch_geometric.loader import DataLoader

        data = list(data)
        if not data:
            raise ValueError("data: no graphs to predict")
        was_training = self.training
        self.eval()
        try:
            outs = [self(b.to(self.device)) for b in DataLoader(data, batch_size=batch_size)]
        finally:
            self.train(was_training)
        return torch.cat(outs).cpu()

    def __repr__(self) -> str:
        hp = self.hparams
        return (
            f"{self.__class__.__name__}(model={self.model.__class__.__name__}, target={hp.target!r}, "
            f"unit={hp.unit!r}, loss={hp.loss!r})"
        )


def mean_baseline_mae(train_targets: Tensor, test_targets: Tensor) -> list[float]:
    """MAE per column of predicting the train-split mean for every test graph (a reference)."""
    mean, _ = target_statistics(train_targets)
    test = test_targets.double().reshape(test_targets.shape[0], -1)
    return (test - torch.tensor(mean, dtype=torch.float64)).abs().mean(dim=0).tolist()
