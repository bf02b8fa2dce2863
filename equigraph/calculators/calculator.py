"""An ASE calculator around an equigraph energy model: energy, forces, stress and per-atom
energies, with a neighbour list that is kept while the atoms move less than half a skin."""
from __future__ import annotations

import os
from typing import Optional, Union

import numpy as np
import torch
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from torch_geometric.data import Data

from equigraph.data import keys as K
from equigraph.graph import RadiusInteractionGraph
from equigraph.models.contract import declared_outputs
from equigraph.models.force_field import ForceField
from equigraph.nn.geometry import edge_vec

__all__ = ["EquigraphCalculator"]


def _drops_edges_beyond_cutoff(model) -> bool:
    """Whether ``model`` drops edges longer than its cutoff itself (``drops_edges_beyond_cutoff``,
    SchNet). Models with an envelope refuse such edges instead (an envelope would zero them,
    so a user's long edges would count for nothing unseen): they get them filtered."""
    return bool(getattr(model, "drops_edges_beyond_cutoff", False))


class EquigraphCalculator(Calculator):
    r"""ASE calculator for a saved equigraph model (a ``model.pt`` of
    :func:`equigraph.models.save`, read with :func:`equigraph.models.load`; the trainer is
    never imported) or a model object: a :class:`~equigraph.models.ForceField`, or an energy
    model with a graph-level scalar ``"y"`` (wrapped in one). Returns ``energy`` (eV),
    ``free_energy`` (the same), ``forces`` (eV/Å), ``stress`` (eV/Å³, Voigt order, ASE's
    sign; for cells of full rank with a periodic direction) and ``energies`` (per atom, when
    the model sums per-atom terms).

    Structures are checked as for ``equigraph predict``: elements outside the model's
    training data (``metadata["elements"]``) are errors, and the training featuriser is
    applied.

    Neighbour list: for a model on a radius graph of cutoff :math:`c`, the graph is built
    with radius :math:`c + \text{skin}` and passed to the model as ``edge_index`` /
    ``shift``; it is rebuilt only when an atom has moved more than :math:`\text{skin}/2`
    since (then no pair can have crossed into the cutoff unseen), or when the cell, the
    periodicity or the atoms change. Edges between :math:`c` and :math:`c + \text{skin}`
    are dropped by models that do so themselves (SchNet); for other models they are filtered
    out by length at every call (``filter_edges``). Models on other graphs (full, kNN, a capped neighbour count) build
    their own at every call.

    Args:
        model (str, Path or torch.nn.Module): a saved model file (or a run folder holding
            ``model.pt``), or a model.
        device (str or torch.device, optional): where the model runs, e.g. ``"cuda"``.
            (default: :obj:`"cpu"`)
        skin (float, optional): neighbour-list skin, Å. (default: :obj:`1.0`)
        filter_edges (bool, optional): drop edges longer than the cutoff at every call;
            :obj:`None` decides from the model (see above). (default: :obj:`None`)
        **kwargs: ASE's :class:`~ase.calculators.calculator.Calculator` arguments.

    Example:
        >>> from ase.build import fcc111
        >>> from equigraph.models import build_model
        >>> model = build_model({"name": "egnn", "hidden_channels": 8, "num_layers": 1, "out_channels": 1,
        ...                      "interaction_graph": 4.0})
        >>> atoms = fcc111("Cu", size=(2, 2, 3), vacuum=6.0)
        >>> atoms.calc = EquigraphCalculator(model)
        >>> atoms.get_forces().shape, atoms.get_stress().shape
        ((12, 3), (6,))
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress", "energies"]

    def __init__(self, model: Union[str, os.PathLike, torch.nn.Module], device: Union[str, torch.device] = "cpu",
                 skin: float = 1.0, filter_edges: Optional[bool] = None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(skin, bool) or not isinstance(skin, (int, float)) or not 0 <= skin < float("inf"):
            raise ValueError(f"skin: expected a finite number >= 0 (Å), got {skin!r}")
        try:
            self.device = torch.device(device)
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"device: {err}") from None
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device: {device!r} was asked for but no CUDA GPU is available")
        if isinstance(model, (str, os.PathLike)):
            from equigraph.models.io import load

            path = os.fspath(model)
            if os.path.isdir(path):
                path = os.path.join(path, "model.pt")
            model = load(path, map_location=self.device)
        if not isinstance(model, torch.nn.Module):
            raise ValueError(f"model: expected a model file or a torch.nn.Module, got {type(model).__name__}")
        self.metadata = dict(getattr(model, "metadata", None) or {})
        if isinstance(model, ForceField):
            inner, energy_key = model.model, model.energy_key
        else:
            declared = declared_outputs(model) or {}
            out = declared.get(K.Y)
            if out is None or out.level != "graph" or out.type != "scalar":
                raise ValueError(f"model: expected a ForceField or an energy model with a graph-level scalar 'y'; "
                                 f"{type(model).__name__} declares {sorted(declared) or 'no outputs'}")
            inner, energy_key = model, K.Y
        inner = inner.to(self.device).eval()
        # One energy model, two wrappers: stress costs a strain derivative, so only when asked.
        self._potential = ForceField(inner, energy_key=energy_key, forces=True, stress=False).eval()
        self._potential_stress = ForceField(inner, energy_key=energy_key, forces=True, stress=True).eval()
        # What equigraph.models.predict.prepare reads: the training elements and featuriser.
        self._potential.metadata = self.metadata
        self.model = inner
        self.skin = float(skin)
        self.cutoff = getattr(inner, "cutoff", None)
        builder = getattr(inner, "interaction_graph", None)
        self._cache_graph = (self.cutoff is not None and isinstance(builder, RadiusInteractionGraph)
                             and builder.max_num_neighbors is None)
        self._min_distance = builder.min_distance if isinstance(builder, RadiusInteractionGraph) else 0.0
        self.filter_edges = (not _drops_edges_beyond_cutoff(inner)) if filter_edges is None else bool(filter_edges)
        #: Number of neighbour-list builds so far.
        self.neighbor_list_builds = 0
        self._nl = None

    # ------------------------------------------------------------------ neighbour list
    def _stale(self, atoms) -> bool:
        nl = self._nl
        if nl is None or len(atoms) != len(nl["numbers"]) or not np.array_equal(atoms.numbers, nl["numbers"]):
            return True
        if not np.array_equal(atoms.pbc, nl["pbc"]) or not np.array_equal(atoms.cell.array, nl["cell"]):
            return True
        moved = np.linalg.norm(atoms.positions - nl["positions"], axis=1)
        return bool(moved.max(initial=0.0) > 0.5 * self.skin)

    def _graph(self, atoms, data: Data):
        if self._stale(atoms):
            builder = RadiusInteractionGraph(self.cutoff + self.skin, min_distance=self._min_distance)
            edge_index, shift = builder.from_data(data)
            self._nl = {"edge_index": edge_index, "shift": shift, "positions": atoms.positions.copy(),
                        "cell": atoms.cell.array.copy(), "pbc": atoms.pbc.copy(), "numbers": atoms.numbers.copy()}
            self.neighbor_list_builds += 1
        edge_index, shift = self._nl["edge_index"], self._nl["shift"]
        if shift is not None:
            shift = shift.to(data[K.POS].dtype)
        if self.filter_edges and edge_index.size(1):
            cell = data[K.CELL] if shift is not None else None
            with torch.no_grad():
                length = edge_vec(data[K.POS], edge_index, shift, cell).norm(dim=-1)
            keep = length < self.cutoff
            edge_index = edge_index[:, keep]
            shift = shift[keep] if shift is not None else None
        return edge_index, shift

    # ------------------------------------------------------------------ ASE
    def _data(self, atoms) -> Data:
        from equigraph.models.predict import prepare

        data = Data(z=torch.from_numpy(atoms.numbers.astype(np.int64)),
                    pos=torch.from_numpy(np.ascontiguousarray(atoms.positions, dtype=np.float64)),
                    cell=torch.from_numpy(atoms.cell.array.astype(np.float64)).unsqueeze(0),
                    pbc=torch.from_numpy(atoms.pbc.copy()).view(1, 3))
        try:
            data = prepare(self._potential, [data])[0]
        except ValueError as err:
            raise ValueError(str(err).replace("molecule 0", f"atoms ({atoms.get_chemical_formula()})", 1)) from None
        data = data.to(self.device)
        if self._cache_graph:
            edge_index, shift = self._graph(atoms, data)
            data[K.EDGE_INDEX] = edge_index
            if shift is not None:
                data[K.SHIFT] = shift
        return data

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        atoms = self.atoms
        stress = "stress" in properties
        if stress and (atoms.cell.rank < 3 or not atoms.pbc.any()):
            raise PropertyNotImplementedError("stress: needs a periodic cell of full rank")
        potential = self._potential_stress if stress else self._potential
        out = potential(self._data(atoms))
        energy = float(out[K.ENERGY].detach().reshape(-1)[0])
        self.results = {"energy": energy, "free_energy": energy,
                        "forces": out[K.FORCES].detach().double().cpu().numpy()}
        if K.NODE_ENERGY in out:
            self.results["energies"] = out[K.NODE_ENERGY].detach().double().cpu().numpy().reshape(-1)
        elif "energies" in properties:
            raise PropertyNotImplementedError("energies: the model is not a sum of per-atom terms")
        if stress:
            from ase.stress import full_3x3_to_voigt_6_stress

            self.results["stress"] = full_3x3_to_voigt_6_stress(out[K.STRESS].detach().double().cpu().numpy()[0])
