"""k-nearest-neighbour graphs within each graph of a batch."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from equigraph.graph.brute_force import block_pairs
from equigraph.graph.checks import check_batch, check_pos, check_positive_int
from equigraph.graph.edges import nearest_mask, sort_order, squared_norm


def knn_graph(pos: Tensor, k: int, batch: Optional[Tensor] = None, *, loop: bool = False) -> Tensor:
    r"""Connect every node to its ``k`` nearest nodes of the same graph.

    .. math::
        \mathcal{E} = \{(j, i) : j \in \mathrm{kNN}_k(i),\; \mathrm{batch}_j = \mathrm{batch}_i\}

    ``edge_index[0]`` is the neighbour ``j``, ``edge_index[1]`` the centre ``i`` (PyG's
    ``source_to_target`` flow, like :func:`torch_geometric.nn.knn_graph`). Distance ties are
    broken by the smaller neighbour index, so the result is deterministic. A node of a
    graph with fewer than ``k + 1`` nodes gets every other node of its graph. The graph is
    in general not symmetric. Edges are sorted by centre, then neighbour; ``batch`` may be
    in any order.

    The search is an exact all-pairs scan in bounded-memory chunks, ``O(sum_g n_g^2)``.

    Args:
        pos (torch.Tensor): node positions.
        k (int): number of neighbours per node.
        batch (torch.Tensor, optional): graph index of every node. (default: :obj:`None`)
        loop (bool, optional): count the node itself as one of its ``k`` nearest (at
            distance 0). (default: :obj:`False`)

    Shapes:
        - **input:** pos :math:`(N, 3)`, batch :math:`(N)`
        - **output:** edge_index :math:`(2, E)`, :math:`E \le kN`

    Raises:
        ValueError: for a ``k`` that is not a positive integer and the bad inputs of
            :func:`equigraph.graph.radius_graph`.

    >>> pos = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [3.0, 0, 0]])
    >>> knn_graph(pos, 1)
    tensor([[1, 0, 1],
            [0, 1, 2]])
    """
    pos = check_pos(pos)
    k = check_positive_int(k, "k")
    n = pos.size(0)
    batch = check_batch(batch, n, device=pos.device)
    if n == 0:
        return torch.zeros(2, 0, dtype=torch.long, device=pos.device)
    pos = pos.detach()
    perm = torch.sort(batch, stable=True).indices
    batch_s, pos_s = batch[perm], pos[perm]
    sizes = torch.bincount(batch_s)
    ptr = torch.cat([sizes.new_zeros(1), torch.cumsum(sizes, 0)])
    out_c, out_j = [], []
    for c, j, _ in block_pairs(batch_s, ptr):
        if not loop:
            keep = c != j
            c, j = c[keep], j[keep]
        vec = pos_s[j] - pos_s[c]
        # centres of a chunk are contiguous and complete, so capping per chunk is exact
        first = int(c[0]) if c.numel() else 0
        mask = nearest_mask(c - first, squared_norm(vec), k, int(c[-1]) - first + 1 if c.numel() else 0)
        out_c.append(c[mask])
        out_j.append(j[mask])
    c, j = perm[torch.cat(out_c)], perm[torch.cat(out_j)]
    order = sort_order(c, j, n)
    if order is not None:
        c, j = c[order], j[order]
    return torch.stack([j, c], dim=0)
