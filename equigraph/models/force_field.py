"""Energy, forces and stress from any energy model, by automatic differentiation."""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Union

import torch
from torch import Tensor

from equigraph.data import keys as K

from .contract import EquigraphModel, Output, declared_outputs
from .registry import build_model, register_model

__all__ = ["ForceField"]


@register_model("force_field")
class ForceField(EquigraphModel):
    r"""Wraps an energy model into an interatomic potential: energy, forces
    :math:`-\partial E / \partial \mathbf{x}` and, for periodic cells, the stress, as
    NequIP's ``ForceStressOutput`` does (one wrapper for every model, never a per-model
    copy).

    .. math::
        \mathbf{F}_i = -\frac{\partial E}{\partial \mathbf{x}_i}, \qquad
        \boldsymbol{\sigma} = \frac{1}{V} \frac{\partial E}{\partial \boldsymbol{\varepsilon}}
        \Big|_{\boldsymbol{\varepsilon} = 0}

    The stress is the derivative with respect to a symmetric strain
    :math:`\boldsymbol{\varepsilon}` applied to positions and cell together
    (:math:`\mathbf{x} \mapsto \mathbf{x}(1 + \boldsymbol{\varepsilon})`,
    :math:`\mathbf{L} \mapsto \mathbf{L}(1 + \boldsymbol{\varepsilon})`), in eV/Å³ with ASE's
    sign convention (positive under tension). Forces are exactly conservative: they are the
    gradient of the returned energy, through the edge vectors
    :math:`\mathbf{x}_j - \mathbf{x}_i + \mathbf{s}\mathbf{L}`, so periodic images are
    handled. Gradients are taken with ``create_graph=True`` in training mode (to train on
    forces) and without it in eval mode; they are computed under ``torch.enable_grad()``,
    so validation needs ``inference_mode=False`` in Lightning (the trainer sets it).

    Args:
        model (dict or torch.nn.Module): the energy model, or its registry spec
            (``{name: egnn, out_channels: 1, reduce: sum, ...}``).
        energy_key (str, optional): the model's graph-level output holding the energy in
            eV, one column. (default: :obj:`"y"`)
        forces (bool, optional): Return ``"forces"``. (default: :obj:`True`)
        stress (bool, optional): Return ``"stress"`` (periodic data with a ``cell``).
            (default: :obj:`False`)
        direct_forces (str, optional): Take the forces from this node-level vector output of
            the model (e.g. EGNN's ``"vec"`` with ``update_coords=True``) instead of
            :math:`-\partial E/\partial \mathbf{x}`: no backward pass, so cheaper to train and
            run, but *not* conservative (energy is not conserved in MD); the default
            (:obj:`None`) is the conservative gradient.

    Shapes:
        - **input:** the wrapped model's input (``pos`` :math:`(N, 3)`, ``cell``
          :math:`(G, 3, 3)` for stress, ...)
        - **output:** ``"energy"`` :math:`(G)`, ``"forces"`` :math:`(N, 3)`, ``"stress"``
          :math:`(G, 3, 3)`, ``"node_energy"`` :math:`(N)` when the model exposes per-atom
          contributions (``"node_y"``)

    Example:
        >>> import torch
        >>> from torch_geometric.data import Data
        >>> ff = ForceField({"name": "egnn", "hidden_channels": 8, "num_layers": 1, "out_channels": 1})
        >>> out = ff(Data(z=torch.tensor([29, 29]), pos=torch.tensor([[0.0, 0, 0], [2.5, 0, 0]])))
        >>> out["energy"].shape, out["forces"].shape
        (torch.Size([1]), torch.Size([2, 3]))
        >>> bool(torch.allclose(out["forces"].sum(0), torch.zeros(3), atol=1e-6))  # Newton's third law
        True
    """

    def __init__(self, model: Union[Mapping[str, Any], torch.nn.Module], energy_key: str = K.Y,
                 forces: bool = True, stress: bool = False, direct_forces: Optional[str] = None):
        super().__init__()
        self.model = build_model(model)
        declared = declared_outputs(self.model)
        if declared is not None:
            out = declared.get(energy_key)
            if out is None:
                raise ValueError(f"energy_key: the model returns no {energy_key!r}; it declares {sorted(declared)}")
            if out.level != "graph" or out.type != "scalar":
                raise ValueError(f"energy_key: {energy_key!r} must be a graph-level scalar to be an energy, "
                                 f"got a {out.level}-level {out.type}")
        out_channels = getattr(self.model, "out_channels", 1)
        if out_channels not in (None, 1):
            raise ValueError(f"model: an energy model predicts one value per graph, this one has out_channels={out_channels}")
        if direct_forces is not None:
            if not forces:
                raise ValueError("direct_forces: set forces=True to return forces")
            head = (declared or {}).get(direct_forces)
            if declared is not None and (head is None or head.level != "node" or head.type != "vector"):
                raise ValueError(f"direct_forces: {direct_forces!r} must be a node-level vector output of the model; "
                                 f"it declares {({k: (o.type, o.level) for k, o in declared.items()})}")
        self.energy_key = energy_key
        self.compute_forces = bool(forces)
        self.compute_stress = bool(stress)
        self.direct_forces = direct_forces

    @property
    def outputs(self) -> Dict[str, Output]:
        out = {K.ENERGY: Output("scalar", "graph")}
        declared = declared_outputs(self.model) or {}
        if K.NODE_Y in declared:
            out[K.NODE_ENERGY] = Output("scalar", "node")
        if self.compute_forces:
            out[K.FORCES] = Output("vector", "node")
        if self.compute_stress:
            out[K.STRESS] = Output("tensor", "graph")
        return out

    @property
    def cutoff(self) -> Optional[float]:
        return getattr(self.model, "cutoff", None)

    @property
    def interaction_graph(self):
        return getattr(self.model, "interaction_graph", None)

    def normalizer(self, key: str):
        if key != K.ENERGY or not hasattr(self.model, "normalizer"):
            return None
        return self.model.normalizer(self.energy_key)

    def forward(self, data) -> Dict[str, Tensor]:
        pos = getattr(data, K.POS, None)
        if pos is None:
            raise ValueError(f"data.{K.POS} is missing")
        cell = getattr(data, K.CELL, None)
        if self.compute_stress and cell is None:
            raise ValueError(f"data.{K.CELL} is missing: stress needs a periodic cell")
        with torch.enable_grad():
            data = data.clone()
            gradient_forces = self.compute_forces and self.direct_forces is None
            pos = pos.detach().requires_grad_(gradient_forces)
            wrt = [pos] if gradient_forces else []
            if self.compute_stress:
                cell = cell.reshape(-1, 3, 3)
                volume = torch.linalg.det(cell.detach()).abs().reshape(-1, 1, 1)
                # The stress is (1/V) dE/de: it needs a cell with a volume (a molecule in a box
                # has one; a zero cell, as from_ase gives a molecule, has none).
                has_volume = volume.reshape(-1) > 1e-8
                if not bool(has_volume.all()):
                    bad = int((~has_volume).nonzero()[0])
                    raise ValueError(f"graph {bad} has a cell of zero volume: stress is (1/V) dE/dstrain and needs a "
                                     "cell (build the ForceField with stress=False for molecules)")
                batch = getattr(data, K.BATCH, None)
                if batch is None:
                    batch = torch.zeros(pos.size(0), dtype=torch.long, device=pos.device)
                strain = torch.zeros_like(cell, requires_grad=True)
                sym = 0.5 * (strain + strain.transpose(-1, -2))
                pos = pos + torch.einsum("ni,nij->nj", pos, sym[batch])
                data[K.CELL] = cell + cell @ sym
                wrt.append(strain)
            data[K.POS] = pos
            out = self.model(data)
            if not isinstance(out, Mapping) or self.energy_key not in out:
                raise ValueError(f"model: forward must return a dict with {self.energy_key!r}")
            energy = out[self.energy_key]
            if energy.dim() == 2 and energy.size(-1) == 1:
                energy = energy.squeeze(-1)
            result = {K.ENERGY: energy}
            if K.NODE_ENERGY in self.outputs:
                result[K.NODE_ENERGY] = out[K.NODE_Y].squeeze(-1)
            if self.direct_forces is not None:
                result[K.FORCES] = out[self.direct_forces].reshape(pos.size(0), -1, 3).sum(dim=1)
            if wrt:
                grads = torch.autograd.grad(energy.sum(), wrt, create_graph=self.training, allow_unused=True)
                grads = [torch.zeros_like(w) if g is None else g for g, w in zip(grads, wrt)]
                if gradient_forces:
                    result[K.FORCES] = -grads[0]
                if self.compute_stress:
                    result[K.STRESS] = grads[-1] / volume
        return result

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.model!r}, energy_key={self.energy_key!r}, "
                f"forces={self.compute_forces}, stress={self.compute_stress}"
                + (f", direct_forces={self.direct_forces!r})" if self.direct_forces else ")"))
