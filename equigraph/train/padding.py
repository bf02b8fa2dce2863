"""Static batch shapes for compiled training: pad every batch to a few bucket sizes.

``torch.compile`` specialises a graph to its input shapes, and CUDA graphs
(``mode="reduce-overhead"``) replay one recorded launch sequence per shape. A molecular batch
has a different number of atoms and edges every step, so without padding a compiled model
either recompiles (static shapes), traces with symbolic sizes (``dynamic=True``, no CUDA
graphs) or re-records a CUDA graph every step. :class:`BucketPadding` rounds the node and
edge counts of a batch up to a geometric grid (a relative step of ``growth``, so at most
that fraction is padding) and always gives ``batch_size + 1`` graphs, so that a whole run
sees a handful of shapes.

The padding is separate graphs appended after the real ones, so no real atom, edge or graph
changes: ``P = batch_size + 1 - G`` padding graphs, the first ``P - 1`` with one atom each
(they only make up the graph count of a short last batch) and the last with the remaining
``>= 2`` atoms on a line ``spacing`` Å apart, linked by edges between neighbours on that line
(cycled until the edge count is reached). Those edges have length ``spacing`` (below the
model's cutoff, so envelopes and radial bases stay finite and no edge is refused) and no
self-loops (``r = 0`` divides in some radial bases). The batch records its real counts
(:data:`~equigraph.data.keys.REAL_GRAPHS`, :data:`~equigraph.data.keys.REAL_NODES`) and the
trainer scores the real rows only (:func:`equigraph.train.targets.pair`).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from equigraph.data import keys as K

__all__ = ["BucketPadding", "real_graphs"]


def real_graphs(batch) -> int:
    """The number of data graphs of a batch: its graphs less the padding ones, if padded."""
    real = getattr(batch, K.REAL_GRAPHS, None)
    return int(real if real is not None else getattr(batch, "num_graphs", 1))


class BucketPadding:
    """Bucket sizes and padding graphs of :class:`~equigraph.train.device_loader.DeviceBatches`.

    Args:
        growth (float): relative step of the size grid, in ``(0, 1]``: sizes are
            ``8 * ceil(8 (1 + growth)^k / 8)``, so a batch is padded by less than ``growth``
            of its size and a run meets about ``spread / growth`` sizes per count, ``spread``
            the relative spread of batch sizes (QM9, batch 96: a few %). (default: ``0.1``)
        spacing (float): distance in Å between the padding atoms of the last padding graph,
            the length of its edges; keep it below the model's cutoff. (default: ``1.0``)

    >>> pad = BucketPadding(growth=0.1)
    >>> [pad.bucket(n) for n in (1, 8, 9, 100, 1727, 1800)]
    [8, 8, 16, 112, 1832, 1832]
    >>> plan = pad.plan(real_nodes=5, real_edges=14, real_graphs=2, batch_size=3)
    >>> plan["nodes"], plan["edges"], plan["graph_of_node"].tolist(), plan["edge_index"].tolist()
    (8, 16, [2, 3, 3], [[6, 7], [7, 6]])
    """

    def __init__(self, growth: float = 0.1, spacing: float = 1.0):
        if isinstance(growth, bool) or not isinstance(growth, (int, float)) or not 0 < growth <= 1:
            raise ValueError(f"data.pad_buckets: the relative bucket step must be a number in (0, 1], got {growth!r}")
        if not (isinstance(spacing, (int, float)) and math.isfinite(spacing) and spacing > 0):
            raise ValueError(f"spacing: must be a finite positive length in Å, got {spacing!r}")
        self.growth, self.spacing = float(growth), float(spacing)

    def bucket(self, n: int) -> int:
        """The smallest grid size ``>= n`` (multiples of 8, geometric with ratio ``1 + growth``)."""
        size = 8.0
        while 8 * math.ceil(size / 8) < n:
            size *= 1.0 + self.growth
        return 8 * math.ceil(size / 8)

    def plan(self, real_nodes: int, real_edges: int, real_graphs: int, batch_size: int) -> dict:
        """The padded sizes of a batch and its padding on the host: ``nodes`` / ``edges`` (the
        padded counts), ``graphs`` (``batch_size + 1``), ``graph_of_node`` (graph index of each
        padding atom) and ``edge_index`` ``[2, edges - real_edges]`` (padding edges, numbered
        in the whole batch)."""
        graphs = batch_size + 1
        extra = graphs - real_graphs  # >= 1: the last padding graph holds the padding edges
        nodes = self.bucket(real_nodes + extra + 1)
        pad_nodes = nodes - real_nodes
        edges = self.bucket(max(real_edges, 1))
        line = pad_nodes - (extra - 1)  # atoms of the last padding graph, >= 2
        graph_of_node = torch.cat([torch.arange(real_graphs, real_graphs + extra - 1),
                                   torch.full((line,), real_graphs + extra - 1)])
        # Both directions between neighbours on the line, repeated up to the edge count.
        a = torch.arange(line - 1)
        pairs = torch.cat([torch.stack([a, a + 1]), torch.stack([a + 1, a])], dim=1)
        reps = -(-(edges - real_edges) // pairs.size(1))
        edge_index = pairs.repeat(1, reps)[:, : edges - real_edges] + (real_nodes + extra - 1)
        return {"nodes": nodes, "edges": edges, "graphs": graphs, "graph_of_node": graph_of_node,
                "edge_index": edge_index}

    def positions(self, count: int, like: Tensor) -> Tensor:
        """``[count, 3]`` positions of the padding atoms: on the x axis, ``spacing`` apart."""
        x = torch.arange(count, device=like.device, dtype=like.dtype) * self.spacing
        return torch.stack([x, torch.zeros_like(x), torch.zeros_like(x)], dim=-1)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(growth={self.growth}, spacing={self.spacing})"
