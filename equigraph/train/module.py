"""The Lightning module that trains any registry model on declared targets."""
from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from equigraph.models import inputs
from equigraph.registry import spec_of
from equigraph.train.padding import real_graphs
from equigraph.train.targets import LOSSES, Target, pair

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
SCHEDULERS = ("cosine", "plateau", "none")


def _build_model(model: dict | nn.Module) -> nn.Module:
    if isinstance(model, nn.Module):
        return model
    if not isinstance(model, dict) or "name" not in model:
        raise ValueError(f"model: expected an nn.Module or a registry config with 'name', got {model!r}")
    from equigraph.models.registry import build_model

    try:
        return build_model(model)
    except ValueError as err:
        raise ValueError(f"model: {err}") from None


def _as_targets(targets) -> list[Target]:
    out = [t if isinstance(t, Target) else Target(**t) for t in targets]
    if not out:
        raise ValueError("targets: at least one target is needed")
    return out


class TaskModule(pl.LightningModule):
    r"""Trains a model whose ``forward(data)`` returns a dict, on declared targets.

    For each :class:`~equigraph.train.targets.Target` the model output ``target.output`` is
    compared with ``batch[target.key]`` in physical units; the loss is

    .. math::
        \mathcal{L} = \sum_t w_t\, \ell_t\!\left(\frac{\hat y_t - y_t}{s_t}\right)

    with :math:`s_t` the target's train-split scale (errors of extensive targets such as
    energies are taken per atom). The model itself predicts in physical units: its output
    statistics are buffers of the model (:func:`equigraph.train.targets.fit_statistics`),
    so ``equigraph.models.save`` / ``load`` need no Lightning. Metrics: ``{stage}_{name}_{metric}``
    per target in its metric unit (``metric`` ``mae`` or ``mse``), ``{stage}_loss``, and
    ``{stage}_{metric}`` of the first target.

    Args:
        model (dict or torch.nn.Module): a registry spec (saved in the checkpoint) or a module
            (then pass ``model=`` again to ``load_from_checkpoint``).
        targets (list of Target or dict): what to train on.
        optimizer (str): ``"adamw"`` or ``"adam"`` (default: ``"adamw"``).
        lr (float): learning rate (default: ``5e-4``).
        weight_decay (float): weight decay (default: ``0``).
        scheduler (str): ``"cosine"`` (over ``max_epochs``), ``"plateau"`` (on ``val_loss``)
            or ``"none"`` (default: ``"cosine"``).
        max_epochs (int): length of the cosine schedule (default: ``100``).
        min_lr (float): final / lowest learning rate (default: ``0``).
        plateau_factor (float): factor of the plateau schedule (default: ``0.5``).
        plateau_patience (int): patience in epochs of the plateau schedule (default: ``10``).
        config (dict, optional): the full run configuration (default: ``None``).

    >>> import torch
    >>> from equigraph.train.targets import Target
    >>> class Mean(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.b = torch.nn.Parameter(torch.full((1,), 2.0))
    ...     def forward(self, data):
    ...         return {"y": self.b.expand(int(data.num_graphs), 1)}
    >>> from torch_geometric.data import Batch, Data
    >>> m = TaskModule(Mean(), targets=[Target("gap", "y", "y", "graph", "eV")])
    >>> m(Batch.from_data_list([Data(z=torch.ones(1, dtype=torch.long))]))["y"].tolist()
    [[2.0]]
    """

    def __init__(
        self,
        model: dict | nn.Module,
        targets: Sequence[Target | dict],
        *,
        optimizer: str = "adamw",
        lr: float = 5e-4,
        weight_decay: float = 0.0,
        scheduler: str = "cosine",
        max_epochs: int = 100,
        min_lr: float = 0.0,
        plateau_factor: float = 0.5,
        plateau_patience: int = 10,
        config: dict | None = None,
    ):
        super().__init__()
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: expected one of {sorted(OPTIMIZERS)}, got {optimizer!r}")
        if scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler: expected one of {list(SCHEDULERS)}, got {scheduler!r}")
        if not lr > 0:
            raise ValueError(f"lr: must be positive, got {lr!r}")
        resolved = _as_targets(targets)
        built = model
        if isinstance(model, nn.Module) and spec_of(model) is not None:
            # A registry model: the checkpoint keeps its spec and rebuilds it by itself.
            model = spec_of(model)
        # Plain values in the hyperparameters (hparams.yaml, checkpoints); read from the frame.
        targets = [t.as_dict() for t in resolved]  # noqa: F841
        self.save_hyperparameters(ignore=["model"] if isinstance(model, nn.Module) else None)
        self.targets = resolved
        self.model = _build_model(built)
        self.loss_fns = {t.name: LOSSES.build(t.loss) for t in self.targets}
        #: Set by the trainer when every split was checked once
        #: (:func:`equigraph.train.device_loader.check_records`): steps then skip the
        #: per-batch value checks, each a device synchronisation.
        self.trusted_inputs = False

    @property
    def metric_unit(self) -> str:
        """Unit of the first target's MAE."""
        return self.targets[0].reported_unit

    def forward(self, batch) -> dict:
        """The model's outputs, in physical units."""
        with inputs.trusted() if self.trusted_inputs else nullcontext():
            out = self.model(batch)
        if not isinstance(out, dict):
            raise ValueError(f"model: forward must return a dict of tensors, got {type(out).__name__}")
        return out

    def _step(self, batch, stage: str) -> Tensor:
        out = self(batch)
        total = 0.0
        graphs = real_graphs(batch)
        sync = stage != "train"
        for i, t in enumerate(self.targets):
            pred, true = pair(t, out, batch)
            loss = self.loss_fns[t.name](pred / t.scale, true / t.scale)
            total = total + t.weight * loss
            if stage != "train":
                err = t.error(pred, true)
                # Weighted by rows, so the epoch value is the mean over atoms for node targets.
                rows = int(pred.size(0))
                self.log(f"{stage}_{t.name}_{t.metric}", err, batch_size=rows, prog_bar=len(self.targets) > 1,
                         sync_dist=sync)
                if i == 0:
                    self.log(f"{stage}_{t.metric}", err, batch_size=rows, prog_bar=True, sync_dist=sync)
        self.log(f"{stage}_loss", total, batch_size=graphs, prog_bar=True, sync_dist=sync,
                 on_step=stage == "train", on_epoch=True)
        return total

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

    def __repr__(self) -> str:
        names = ", ".join(t.name for t in self.targets)
        return f"{self.__class__.__name__}(model={self.model.__class__.__name__}, targets=[{names}])"
