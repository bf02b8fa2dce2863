"""Fully connected graphs within each graph of a batch."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from equigraph.graph.brute_force import block_pairs
from equigraph.graph.checks import check_batch
from equigraph.graph.edges import sort_order


def full_graph(batch: Optional[Tensor] = None, *, num_nodes: Optional[int] = None, loop: bool = False) -> Tensor:
    r"""All ordered pairs of nodes within each graph, in one vectorised pass (no Python
    loop over graphs).

    .. math::
        \mathcal{E} = \{(j, i) : \mathrm{batch}_j = \mathrm{batch}_i,\; j \ne i\}

    Edges are sorted by centre ``edge_index[1]``, then neighbour ``edge_index[0]``.
    ``batch`` may be in any order and skip graph indices.

    Args:
        batch (torch.Tensor, optional): graph index of every node. (default: :obj:`None`,
            one graph of ``num_nodes`` nodes)
        num_nodes (int, optional): number of nodes; required when ``batch`` is
            :obj:`None`, checked against ``batch`` otherwise. (default: :obj:`None`)
        loop (bool, optional): add self loops. (default: :obj:`False`)

    Shapes:
        - **input:** batch :math:`(N)`
        - **output:** edge_index :math:`(2, \sum_g n_g (n_g - 1))`

    Raises:
        ValueError: if neither ``batch`` nor ``num_nodes`` is given, ``num_nodes`` is
            negative or disagrees with ``batch``, or ``batch`` is invalid.

    >>> full_graph(num_nodes=3)
    tensor([[1, 2, 0, 2, 0, 1],
            [0, 0, 1, 1, 2, 2]])
    """
    if batch is None:
        if num_nodes is None:
            raise ValueError("`num_nodes` is required when `batch` is None")
        if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 0:
            raise ValueError(f"`num_nodes` must be a non-negative integer, got {num_nodes!r}")
        n = num_nodes
    else:
        n = batch.numel() if num_nodes is None else num_nodes
        if isinstance(batch, torch.Tensor) and num_nodes is not None and batch.numel() != num_nodes:
            raise ValueError(f"`num_nodes` ({num_nodes}) disagrees with the length of `batch` ({batch.numel()})")
    device = batch.device if isinstance(batch, torch.Tensor) else None
    batch = check_batch(batch, n, device=device)
    if n == 0:
        return torch.zeros(2, 0, dtype=torch.long, device=batch.device)
    perm = torch.sort(batch, stable=True).indices
    batch_s = batch[perm]
    sizes = torch.bincount(batch_s)
    ptr = torch.cat([sizes.new_zeros(1), torch.cumsum(sizes, 0)])
    total = int((sizes * sizes).sum())
    (c, j, _), = block_pairs(batch_s, ptr, budget=max(total, 1))
    if not loop:
        keep = c != j
        c, j = c[keep], j[keep]
    c, j = perm[c], perm[j]
    order = sort_order(c, j, n)
    if order is not None:
        c, j = c[order], j[order]
    return torch.stack([j, c], dim=0)
