r"""The Open Catalyst 2020 metrics, as fairchem's evaluator defines them
(``fairchem.core.modules.evaluator``; Chanussot et al., `"Open Catalyst 2020 (OC20)
Dataset and Community Challenges" <https://arxiv.org/abs/2010.09990>`_, Sec. 4).

Every function takes tensors with a ``batch`` vector where a per-structure reduction is
needed, and returns a Python float (or a dict of them). Energies in eV, forces in eV/Å.

S2EF (structure to energy and forces), over the *free* atoms of each structure when a
``free`` mask is given (fairchem's default ``eval_on_free_atoms``: fixed subsurface atoms
are not scored):

.. math::
    \mathrm{energy\ MAE} = \frac{1}{G}\sum_g |\hat E_g - E_g|, \qquad
    \mathrm{force\ MAE} = \frac{1}{3N}\sum_{i,d} |\hat F_{id} - F_{id}|, \qquad
    \mathrm{force\ cos} = \frac{1}{N}\sum_i \frac{\hat{\mathbf{F}}_i\cdot\mathbf{F}_i}
        {\|\hat{\mathbf{F}}_i\|\,\|\mathbf{F}_i\|}

.. math::
    \mathrm{EwT} = \frac{1}{G}\sum_g [\,|\hat E_g - E_g| < 0.02\ \mathrm{eV}\,], \qquad
    \mathrm{EFwT} = \frac{1}{G}\sum_g [\,|\hat E_g - E_g| < 0.02\ \mathrm{eV}
        \wedge \max_{i \in g, d} |\hat F_{id} - F_{id}| < 0.03\ \mathrm{eV/Å}\,]

IS2RE (initial structure to relaxed energy): energy MAE, MSE and EwT of the relaxed energy.

A structure whose atoms are all fixed has no force to score: EFwT then tests its energy
alone (fairchem's loop would fail on it). Cosines of zero-length vectors are 0, as in
:func:`torch.nn.functional.cosine_similarity`.

>>> import torch
>>> e_pred, e_true = torch.tensor([1.00, 2.50]), torch.tensor([1.01, 2.00])
>>> energy_mae(e_pred, e_true), energy_within_threshold(e_pred, e_true)
(0.2549999952316284, 0.5)
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import Tensor
from torch_geometric.utils import scatter

__all__ = ["ENERGY_THRESHOLD", "FORCE_THRESHOLD", "energy_mae", "energy_mse", "energy_within_threshold",
           "forces_mae", "forces_cosine", "energy_forces_within_threshold", "s2ef_metrics", "is2re_metrics"]

#: EwT / EFwT energy threshold, eV (fairchem).
ENERGY_THRESHOLD = 0.02
#: EFwT force threshold, eV/Å (fairchem).
FORCE_THRESHOLD = 0.03


def _energies(pred: Tensor, true: Tensor) -> tuple[Tensor, Tensor]:
    pred, true = torch.as_tensor(pred), torch.as_tensor(true)
    if pred.numel() != true.numel() or pred.numel() == 0:
        raise ValueError(f"energies: prediction has {pred.numel()} values and target {true.numel()}; "
                         "expected one per structure each, at least one")
    pred, true = pred.detach().reshape(-1).double(), true.detach().reshape(-1).double().to(pred.device)
    _finite(pred, "predicted energies")
    _finite(true, "target energies")
    return pred, true


def _finite(t: Tensor, what: str) -> None:
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{what} contain NaN or inf")


def _forces(pred: Tensor, true: Tensor, free: Optional[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """Float64 ``[N, 3]`` forces and the bool mask of the scored atoms."""
    pred, true = torch.as_tensor(pred), torch.as_tensor(true)
    if pred.dim() != 2 or pred.size(-1) != 3 or pred.shape != true.shape:
        raise ValueError(f"forces: prediction {list(pred.shape)} and target {list(true.shape)} must both be [N, 3]")
    pred, true = pred.detach().double(), true.detach().double().to(pred.device)
    _finite(pred, "predicted forces")
    _finite(true, "target forces")
    if free is None:
        mask = torch.ones(pred.size(0), dtype=torch.bool, device=pred.device)
    else:
        mask = torch.as_tensor(free).reshape(-1).to(pred.device)
        if mask.numel() != pred.size(0):
            raise ValueError(f"free: has {mask.numel()} entries for {pred.size(0)} atoms")
        mask = mask.bool()
    return pred, true, mask


def energy_mae(pred: Tensor, true: Tensor) -> float:
    """Mean absolute energy error over structures, eV."""
    pred, true = _energies(pred, true)
    return float((pred - true).abs().mean())


def energy_mse(pred: Tensor, true: Tensor) -> float:
    """Mean squared energy error over structures, eV²."""
    pred, true = _energies(pred, true)
    return float((pred - true).square().mean())


def energy_within_threshold(pred: Tensor, true: Tensor, threshold: float = ENERGY_THRESHOLD) -> float:
    """EwT: fraction of structures with ``|dE| < threshold`` (eV)."""
    pred, true = _energies(pred, true)
    return float(((pred - true).abs() < threshold).double().mean())


def forces_mae(pred: Tensor, true: Tensor, free: Optional[Tensor] = None) -> float:
    """Mean absolute error over every Cartesian component of the scored atoms, eV/Å."""
    pred, true, mask = _forces(pred, true, free)
    if not bool(mask.any()):
        raise ValueError("free: no atom is free, there is no force to score")
    return float((pred[mask] - true[mask]).abs().mean())


def forces_cosine(pred: Tensor, true: Tensor, free: Optional[Tensor] = None) -> float:
    """Mean cosine similarity between predicted and target force vectors of the scored atoms."""
    pred, true, mask = _forces(pred, true, free)
    if not bool(mask.any()):
        raise ValueError("free: no atom is free, there is no force to score")
    return float(torch.nn.functional.cosine_similarity(pred[mask], true[mask], dim=-1).mean())


def _batch(batch: Optional[Tensor], num_atoms: int, num_graphs: int, device) -> Tensor:
    if batch is None:
        if num_graphs != 1:
            raise ValueError(f"batch: needed for {num_graphs} structures")
        return torch.zeros(num_atoms, dtype=torch.long, device=device)
    batch = torch.as_tensor(batch).reshape(-1).to(device)
    if batch.numel() != num_atoms:
        raise ValueError(f"batch: has {batch.numel()} entries for {num_atoms} atoms")
    if num_atoms and (int(batch.min()) < 0 or int(batch.max()) >= num_graphs):
        raise ValueError(f"batch: refers to structures outside [0, {num_graphs}) (one energy per structure)")
    return batch.long()


def energy_forces_within_threshold(energy_pred: Tensor, energy_true: Tensor, forces_pred: Tensor,
                                   forces_true: Tensor, batch: Optional[Tensor] = None,
                                   free: Optional[Tensor] = None, energy_threshold: float = ENERGY_THRESHOLD,
                                   force_threshold: float = FORCE_THRESHOLD) -> float:
    """EFwT: fraction of structures with ``|dE| < energy_threshold`` and the largest force
    component error over its scored atoms ``< force_threshold``.

    >>> import torch
    >>> f = torch.zeros(3, 3); f_pred = f.clone(); f_pred[2, 0] = 0.05
    >>> energy_forces_within_threshold(torch.zeros(2), torch.zeros(2), f_pred, f, torch.tensor([0, 0, 1]))
    0.5
    """
    e_pred, e_true = _energies(energy_pred, energy_true)
    f_pred, f_true, mask = _forces(forces_pred, forces_true, free)
    batch = _batch(batch, f_pred.size(0), e_pred.numel(), f_pred.device)
    err = (f_pred - f_true).abs().amax(dim=-1) * mask
    worst = scatter(err, batch, dim=0, dim_size=e_pred.numel(), reduce="max")
    ok = ((e_pred - e_true).abs() < energy_threshold) & (worst < force_threshold)
    return float(ok.double().mean())


def s2ef_metrics(energy_pred: Tensor, energy_true: Tensor, forces_pred: Tensor, forces_true: Tensor,
                 batch: Optional[Tensor] = None, free: Optional[Tensor] = None) -> Dict[str, float]:
    """Every S2EF metric: ``energy_mae`` (eV), ``forces_mae`` (eV/Å), ``forces_cos``,
    ``energy_within_threshold`` (EwT), ``energy_forces_within_threshold`` (EFwT)."""
    return {
        "energy_mae": energy_mae(energy_pred, energy_true),
        "forces_mae": forces_mae(forces_pred, forces_true, free),
        "forces_cos": forces_cosine(forces_pred, forces_true, free),
        "energy_within_threshold": energy_within_threshold(energy_pred, energy_true),
        "energy_forces_within_threshold": energy_forces_within_threshold(
            energy_pred, energy_true, forces_pred, forces_true, batch, free),
    }


def is2re_metrics(energy_pred: Tensor, energy_true: Tensor) -> Dict[str, float]:
    """Every IS2RE metric: ``energy_mae`` (eV), ``energy_mse`` (eV²),
    ``energy_within_threshold`` (EwT)."""
    return {
        "energy_mae": energy_mae(energy_pred, energy_true),
        "energy_mse": energy_mse(energy_pred, energy_true),
        "energy_within_threshold": energy_within_threshold(energy_pred, energy_true),
    }
