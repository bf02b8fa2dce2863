"""Interaction-graph callables: PyG SchNet's ``interaction_graph=`` contract
``(pos, batch) -> (edge_index, edge_weight)``, plus ``from_data(data) -> (edge_index,
shift_or_None)`` for models that read a whole :class:`~torch_geometric.data.Data`.

Pluggable graph construction instead of ``use_pbc``-style flags: a model holds one of
these and never needs to know how its neighbours were found.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from equigraph.data import keys as K
from equigraph.graph.checks import check_cutoff, check_min_distance, check_positive_int
from equigraph.graph.coincidence import DEFAULT_MIN_DISTANCE
from equigraph.graph.full import full_graph
from equigraph.graph.knn import knn_graph
from equigraph.graph.radius import periodic_radius_graph, radius_graph
from equigraph.registry import Registry

#: Interaction graphs by config name: ``{name: radius, cutoff: 5.0}``, ``full``, ``{name: knn, k: 12}``.
INTERACTION_GRAPHS = Registry("interaction graph")


def is_periodic(data) -> bool:
    """Whether ``data`` carries a ``cell`` and a ``pbc`` with any direction periodic."""
    pbc = getattr(data, K.PBC, None)
    return getattr(data, K.CELL, None) is not None and pbc is not None and bool(torch.as_tensor(pbc).any())


def _batch_of(data) -> Optional[Tensor]:
    return getattr(data, K.BATCH, None)


def _edge_weight(pos: Tensor, edge_index: Tensor) -> Tensor:
    # differentiable in pos: SchNet and friends take forces through these lengths
    return (pos[edge_index[0]] - pos[edge_index[1]]).norm(dim=-1)


@INTERACTION_GRAPHS.register("radius")
class RadiusInteractionGraph(torch.nn.Module):
    r"""Edges between atoms of a graph closer than ``cutoff``
    (:func:`equigraph.graph.radius_graph`); with :meth:`from_data`, periodic images when
    the data has a ``cell`` and a ``pbc`` (:func:`equigraph.graph.periodic_radius_graph`).

    Args:
        cutoff (float): cutoff distance, Å.
        max_num_neighbors (int, optional): keep the nearest ones only.
            (default: :obj:`None`, no cap)
        min_distance (float, optional): two atoms (or an atom and a periodic image) closer
            than this raise a :class:`ValueError` (coincident atoms); ``0`` disables it.
            (default: ``1e-4``)

    >>> from torch_geometric.nn.models import SchNet
    >>> model = SchNet(interaction_graph=RadiusInteractionGraph(5.0))
    >>> model(torch.tensor([6, 1, 1]), torch.randn(3, 3)).shape
    torch.Size([1, 1])
    """

    def __init__(self, cutoff: float, max_num_neighbors: Optional[int] = None,
                 min_distance: float = DEFAULT_MIN_DISTANCE):
        super().__init__()
        self.cutoff = check_cutoff(cutoff, "cutoff")
        self.max_num_neighbors = check_positive_int(max_num_neighbors, "max_num_neighbors", allow_none=True)
        self.min_distance = check_min_distance(min_distance)

    def forward(self, pos: Tensor, batch: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        edge_index = radius_graph(pos, self.cutoff, batch, max_num_neighbors=self.max_num_neighbors,
                                  min_distance=self.min_distance)
        return edge_index, _edge_weight(pos, edge_index)

    def from_data(self, data) -> tuple[Tensor, Optional[Tensor]]:
        """``(edge_index, shift)`` for ``data``; ``shift`` is :obj:`None` unless the data is
        periodic."""
        pos = getattr(data, K.POS)
        if is_periodic(data):
            return periodic_radius_graph(pos, self.cutoff, getattr(data, K.CELL), getattr(data, K.PBC), _batch_of(data),
                                         max_num_neighbors=self.max_num_neighbors, min_distance=self.min_distance)
        return radius_graph(pos, self.cutoff, _batch_of(data), max_num_neighbors=self.max_num_neighbors,
                            min_distance=self.min_distance), None

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(cutoff={self.cutoff}, max_num_neighbors={self.max_num_neighbors}, "
                f"min_distance={self.min_distance})")


def _reject_periodic(obj, data):
    if is_periodic(data):
        raise ValueError(f"{obj.__class__.__name__} has no periodic version: `data` has a cell and pbc; use "
                         "a radius graph for periodic data")


@INTERACTION_GRAPHS.register("full")
class FullInteractionGraph(torch.nn.Module):
    r"""Every ordered pair of atoms of the same graph (:func:`equigraph.graph.full_graph`),
    as in EGNN's fully connected setting. Open systems only.

    >>> FullInteractionGraph()(torch.zeros(2, 3) + torch.tensor([[0.0], [1.0]]), None)[1]
    tensor([1.7321, 1.7321])
    """

    def forward(self, pos: Tensor, batch: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        edge_index = full_graph(batch, num_nodes=pos.size(0))
        if edge_index.device != pos.device:
            edge_index = edge_index.to(pos.device)
        return edge_index, _edge_weight(pos, edge_index)

    def from_data(self, data) -> tuple[Tensor, None]:
        _reject_periodic(self, data)
        pos = getattr(data, K.POS)
        batch = _batch_of(data)
        return full_graph(batch, num_nodes=pos.size(0)).to(pos.device), None

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}()"


@INTERACTION_GRAPHS.register("knn")
class KNNInteractionGraph(torch.nn.Module):
    r"""Each atom's ``k`` nearest atoms of the same graph (:func:`equigraph.graph.knn_graph`).
    Open systems only.

    Args:
        k (int): neighbours per atom.

    >>> KNNInteractionGraph(1)(torch.tensor([[0.0, 0, 0], [2.0, 0, 0]]), None)[0]
    tensor([[1, 0],
            [0, 1]])
    """

    def __init__(self, k: int):
        super().__init__()
        self.k = check_positive_int(k, "k")

    def forward(self, pos: Tensor, batch: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        edge_index = knn_graph(pos, self.k, batch)
        return edge_index, _edge_weight(pos, edge_index)

    def from_data(self, data) -> tuple[Tensor, None]:
        _reject_periodic(self, data)
        return knn_graph(getattr(data, K.POS), self.k, _batch_of(data)), None

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(k={self.k})"
