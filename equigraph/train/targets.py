"""Training targets: which model output is compared with which data key, at which level,
with which loss, weight and unit; and the statistics that put a model's outputs in physical
units before training.

A config's ``targets`` section names targets; each entry may set ``output`` (model key,
default: the dataset's), ``key`` (data key), ``loss`` (``l1``, ``mse``, ``huber``, ``unoriented_normal``; default
``train.loss``), ``weight`` (1) and ``metric_unit`` (e.g. ``meV`` for an ``eV`` target).
An empty section trains on every target the dataset declares.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, List, Optional

import torch
from torch import Tensor, nn

from equigraph.data import keys as K
from equigraph.datasets.registry import DataSplits
from equigraph.models.contract import declared_outputs
from equigraph.registry import Registry
from equigraph.train.units import conversion_factor

__all__ = ["LOSSES", "Target", "resolve_targets", "fit_statistics", "pair", "UnorientedNormalLoss"]

#: Loss functions by config name; each takes ``(pred, target)`` in normalised units.
LOSSES = Registry("loss")
LOSSES.register("l1", nn.L1Loss)
LOSSES.register("mse", nn.MSELoss)
LOSSES.register("huber", nn.HuberLoss)


class UnorientedNormalLoss(nn.Module):
    r"""Loss of an unoriented direction (a surface normal known up to its sign), per row

    .. math::
        \ell(\hat n, n) = \frac{1}{N}\sum_i 1 - \frac{(\hat n_i \cdot n_i)^2}
        {|\hat n_i|^2\, |n_i|^2 + \epsilon},

    the mean over rows of :math:`\sin^2` of the angle between the lines: invariant to the
    sign and the length of either vector (so the trainer's scale normalisation leaves it
    unchanged), 0 when parallel, 1 when orthogonal; a zero row gives 1 with a finite gradient.

    Args:
        eps (float): added to the denominator, in units of :math:`|\hat n|^2 |n|^2`
            (default: ``1e-12``).

    Shapes:
        - **input:** ``pred [N, D]``, ``true [N, D]`` (``D`` usually 3)
        - **output:** a scalar

    >>> loss = UnorientedNormalLoss()
    >>> n = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    >>> round(float(loss(-2 * n, n)), 6), round(float(loss(n.flip(0), n)), 6)
    (0.0, 1.0)
    """

    def __init__(self, eps: float = 1e-12):
        super().__init__()
        if not eps > 0:
            raise ValueError(f"eps: must be positive, got {eps!r}")
        self.eps = float(eps)

    def forward(self, pred: Tensor, true: Tensor) -> Tensor:
        if pred.shape != true.shape or pred.dim() != 2:
            raise ValueError(f"pred: expected the shape [N, D] of true {tuple(true.shape)}, got {tuple(pred.shape)}")
        dot = (pred * true).sum(-1)
        norms = pred.square().sum(-1) * true.square().sum(-1)
        return (1.0 - dot.square() / (norms + self.eps)).mean()


LOSSES.register("unoriented_normal", UnorientedNormalLoss)


@dataclass
class Target:
    """One trained quantity. ``scale`` normalises its errors in the loss (the train split's
    mean absolute deviation; per atom for extensive targets, whose errors are also taken
    per atom)."""

    name: str
    output: str
    key: str
    level: str
    unit: str
    loss: str = "l1"
    weight: float = 1.0
    metric_unit: Optional[str] = None
    extensive: bool = False
    scale: float = 1.0
    metric: str = "mae"

    @property
    def metric_factor(self) -> float:
        return conversion_factor(self.unit, self.metric_unit)

    def error(self, pred: Tensor, true: Tensor) -> Tensor:
        """The target's metric (``mae`` or ``mse``) of a batch, in its reported unit."""
        err = (pred.detach() - true) * self.metric_factor
        return err.abs().mean() if self.metric == "mae" else err.square().mean()

    @property
    def reported_unit(self) -> str:
        unit = self.metric_unit or self.unit
        if self.metric_unit and "/" in self.unit and "/" not in unit:
            unit = f"{unit}/{self.unit.partition('/')[2]}"  # meV for an eV/Å target: meV/Å
        unit = f"{unit}/atom" if self.extensive else unit
        return f"({unit})^2" if self.metric == "mse" and unit else unit

    def as_dict(self) -> dict:
        return asdict(self)


_TARGET_KEYS = {"output", "key", "loss", "weight", "metric_unit", "metric"}
#: Reported error metrics: mean absolute or mean squared error (per component, per atom for
#: extensive targets).
METRICS = ("mae", "mse")


def resolve_targets(config: dict, splits: DataSplits, model: nn.Module) -> List[Target]:
    """The targets of a run: the config's ``targets`` (or every target of the dataset),
    checked against the data and the model's declared outputs."""
    wanted = config.get("targets") or {name: {} for name in splits.targets}
    default_loss = config["train"]["loss"]
    declared = declared_outputs(model)
    targets = []
    for i, (name, spec) in enumerate(wanted.items()):
        unknown = set(spec) - _TARGET_KEYS
        if unknown:
            raise ValueError(f"targets.{name}: unknown keys {sorted(unknown)}; expected {sorted(_TARGET_KEYS)}")
        info = splits.targets.get(name)
        if info is None and "key" not in spec:
            raise ValueError(f"targets.{name}: the dataset has no target {name!r}; it has {sorted(splits.targets)}")
        key = spec.get("key", info.key if info else name)
        output = spec.get("output", info.model_output if info else name)
        loss = spec.get("loss", default_loss)
        LOSSES.get(loss)  # unknown loss names list the known ones
        weight = spec.get("weight", 1.0)
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
            raise ValueError(f"targets.{name}.weight must be a non-negative number, got {weight!r}")
        level = info.level if info else "graph"
        if declared is not None:
            if output not in declared:
                hint = ""
                if output in (K.FORCES, K.STRESS, K.ENERGY):
                    hint = (" (wrap an energy model: model: {name: force_field, model: {name: egnn, out_channels: 1, "
                            "atom_ref: true}})")
                raise ValueError(f"targets.{name}: the model returns no {output!r}; it declares {sorted(declared)}{hint}")
            level = declared[output].level
        metric = spec.get("metric", "mae")
        if metric not in METRICS:
            raise ValueError(f"targets.{name}.metric must be one of {', '.join(METRICS)}, got {metric!r}")
        metric_unit = spec.get("metric_unit", config["train"]["metric_unit"] if i == 0 else None)
        unit = info.unit if info else ""
        conversion_factor(unit, metric_unit)  # an impossible conversion is an error now, not after training
        targets.append(Target(name=name, output=output, key=key, level=level, unit=unit, loss=loss,
                              weight=float(weight), metric_unit=metric_unit,
                              extensive=bool(info.extensive) if info else False, metric=metric))
    if not any(t.weight > 0 for t in targets):
        raise ValueError("targets: every weight is 0, nothing to train on")
    return targets


def _composition(splits: DataSplits, max_z: int) -> Tensor:
    rows = []
    for d in splits.graphs("train"):
        rows.append(torch.bincount(d[K.Z].long(), minlength=max_z)[:max_z].double())
    return torch.stack(rows)


def fit_statistics(targets: List[Target], splits: DataSplits, model: nn.Module) -> Dict[str, dict]:
    """Fit each target's output statistics on the train split and set them on the model
    (:meth:`equigraph.models.EquigraphModel.normalizer`), and each target's loss scale.

    Intensive graph targets: shift = mean, scale = mean absolute deviation (MAD).
    Extensive ones (energies): per-element references by least squares on the composition,
    shift 0, scale = MAD of the per-atom residual (or the force RMS when forces are trained
    too). Node targets: scale = mean absolute component. Returns what was set, per target.
    """
    summary: Dict[str, dict] = {}
    force_scale = None
    for t in targets:
        if t.level == "node":
            values = splits.values(t.key, "train", "node").double()
            if not bool(torch.isfinite(values).all()):
                raise ValueError(f"targets.{t.name}: the train split holds NaN or inf in {t.key!r}")
            if t.output in (K.POS,):
                # Positions: the scale of the displacement, not of the coordinates.
                start = splits.values(K.POS, "train", "node").double()
                values = values - start
            t.scale = float(values.abs().mean()) or 1.0
            if t.output == K.FORCES:
                force_scale = float(values.square().mean().sqrt()) or 1.0
            summary[t.name] = {"loss_scale": t.scale}
    for t in targets:
        if t.level != "graph":
            continue
        y = splits.values(t.key, "train", "graph").double()
        if y.dim() == 1:
            y = y.unsqueeze(-1)
        if not bool(torch.isfinite(y).all()):
            raise ValueError(f"targets.{t.name}: the train split holds NaN or inf in {t.key!r}")
        norm = model.normalizer(t.output) if hasattr(model, "normalizer") else None
        if t.extensive:
            if norm is None or norm.atom_ref is None:
                raise ValueError(f"targets.{t.name}: an extensive target needs per-element references in the model "
                                 "(e.g. model.atom_ref: true for EGNN)")
            comp = _composition(splits, norm.atom_ref.size(0))
            ref = torch.linalg.lstsq(comp, y, driver="gelsd").solution  # [max_z, T]
            present = comp.sum(0) > 0
            ref[~present] = 0.0
            natoms = comp.sum(1, keepdim=True)
            residual = (y - comp @ ref) / natoms
            per_atom = float((residual - residual.mean(0)).abs().mean())
            # A fit that is exact (few structures, or energies that are a sum of element
            # terms) leaves no residual; keep the scale at a size the network can use.
            per_atom = max(per_atom, 1e-3 * float((y / natoms).abs().mean()), 1e-6)
            t.scale = per_atom
            out_scale = force_scale if force_scale is not None else per_atom
            norm.set_statistics(scale=out_scale, shift=0.0, atom_ref=ref)
            summary[t.name] = {"loss_scale": t.scale, "output_scale": out_scale,
                               "elements": present.nonzero().flatten().tolist()}
        else:
            mean = y.mean(0)
            mad = (y - mean).abs().mean(0)
            mad = torch.where(mad > 0, mad, torch.ones_like(mad))
            t.scale = float(mad.mean())
            if norm is not None:
                norm.set_statistics(scale=mad, shift=mean)
            summary[t.name] = {"loss_scale": t.scale, "mean": mean.tolist(), "mad": mad.tolist()}
    return summary


def pair(t: Target, out: dict, batch) -> tuple[Tensor, Tensor]:
    """The prediction and the data value of target ``t`` for a batch, in physical units
    (per atom for extensive targets); of a padded batch
    (:class:`~equigraph.train.padding.BucketPadding`), the real graphs or nodes only."""
    if t.output not in out:
        raise ValueError(f"model: returns no {t.output!r} for target {t.name!r}; it returns {sorted(out)}")
    true = getattr(batch, t.key, None)
    if true is None:
        raise ValueError(f"batch: no {t.key!r} to train target {t.name!r} on")
    pred = out[t.output]
    real = getattr(batch, K.REAL_GRAPHS if t.level == "graph" else K.REAL_NODES, None)
    if real is not None:  # the padding rows follow the real ones
        pred, true = pred[:real], true[:real]
    if t.level == "graph" and pred.dim() == 1:
        pred = pred.unsqueeze(-1)
    true = true.to(pred.dtype).reshape(pred.shape) if true.numel() == pred.numel() else true
    if pred.shape != true.shape:
        raise ValueError(f"target {t.name!r}: prediction shape {tuple(pred.shape)} != data shape {tuple(true.shape)}")
    if t.extensive:
        ptr = getattr(batch, "ptr", None)
        # From ptr: bincount's output size depends on the data, a device synchronisation.
        natoms = ptr.diff() if ptr is not None else torch.bincount(batch.batch, minlength=pred.size(0))
        natoms = natoms[: pred.size(0)].to(pred.dtype).reshape(-1, *([1] * (pred.dim() - 1)))
        pred, true = pred / natoms, true / natoms
    return pred, true
