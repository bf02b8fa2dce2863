"""PyG transforms that write a neighbour graph into a :class:`~torch_geometric.data.Data`."""
from __future__ import annotations

from typing import Optional

from torch_geometric.transforms import BaseTransform

from equigraph.data import keys as K
from equigraph.graph.checks import check_cutoff, check_min_distance, check_positive_int
from equigraph.graph.coincidence import DEFAULT_MIN_DISTANCE
from equigraph.graph.full import full_graph
from equigraph.graph.interaction import _reject_periodic, is_periodic
from equigraph.graph.knn import knn_graph
from equigraph.graph.radius import periodic_radius_graph, radius_graph


class RadiusGraph(BaseTransform):
    r"""Write ``edge_index`` of the radius graph (:func:`equigraph.graph.radius_graph`) and,
    when the data is periodic (``cell`` and ``pbc`` with any ``True``), ``shift`` from
    :func:`equigraph.graph.periodic_radius_graph`.

    Args:
        r (float): cutoff, Å.
        max_num_neighbors (int, optional): keep the nearest ones only. (default: :obj:`None`)
        loop (bool, optional): self loops (open systems only). (default: :obj:`False`)
        min_distance (float, optional): two atoms (or an atom and a periodic image) closer
            than this raise a :class:`ValueError` (coincident atoms); ``0`` disables it.
            (default: ``1e-4``)

    >>> import torch
    >>> from torch_geometric.data import Data
    >>> RadiusGraph(1.5)(Data(pos=torch.tensor([[0.0, 0, 0], [1.0, 0, 0]]))).edge_index
    tensor([[1, 0],
            [0, 1]])
    """

    def __init__(self, r: float, max_num_neighbors: Optional[int] = None, loop: bool = False,
                 min_distance: float = DEFAULT_MIN_DISTANCE):
        self.r = check_cutoff(r)
        self.max_num_neighbors = check_positive_int(max_num_neighbors, "max_num_neighbors", allow_none=True)
        self.loop = bool(loop)
        self.min_distance = check_min_distance(min_distance)

    def forward(self, data):
        pos = getattr(data, K.POS)
        batch = getattr(data, K.BATCH, None)
        if is_periodic(data):
            if self.loop:
                raise ValueError("`loop=True` is not supported for periodic data")
            edge_index, shift = periodic_radius_graph(pos, self.r, getattr(data, K.CELL), getattr(data, K.PBC), batch,
                                                      max_num_neighbors=self.max_num_neighbors,
                                                      min_distance=self.min_distance)
            setattr(data, K.SHIFT, shift)
        else:
            edge_index = radius_graph(pos, self.r, batch, max_num_neighbors=self.max_num_neighbors, loop=self.loop,
                                      min_distance=self.min_distance)
        setattr(data, K.EDGE_INDEX, edge_index)
        return data

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(r={self.r}, max_num_neighbors={self.max_num_neighbors}, loop={self.loop}, "
                f"min_distance={self.min_distance})")


class KNNGraph(BaseTransform):
    r"""Write ``edge_index`` of the ``k``-nearest-neighbour graph
    (:func:`equigraph.graph.knn_graph`). Open systems only.

    Args:
        k (int): neighbours per node.
        loop (bool, optional): count the node itself. (default: :obj:`False`)
    """

    def __init__(self, k: int, loop: bool = False):
        self.k = check_positive_int(k, "k")
        self.loop = bool(loop)

    def forward(self, data):
        _reject_periodic(self, data)
        setattr(data, K.EDGE_INDEX, knn_graph(getattr(data, K.POS), self.k, getattr(data, K.BATCH, None), loop=self.loop))
        return data

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(k={self.k}, loop={self.loop})"


class FullGraph(BaseTransform):
    r"""Write ``edge_index`` of the fully connected graph (:func:`equigraph.graph.full_graph`)
    over ``data.num_nodes``. Open systems only."""

    def forward(self, data):
        _reject_periodic(self, data)
        setattr(data, K.EDGE_INDEX, full_graph(getattr(data, K.BATCH, None), num_nodes=data.num_nodes))
        return data

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}()"
