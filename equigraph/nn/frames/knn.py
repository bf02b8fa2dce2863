r"""Dense batched k-nearest neighbours in any feature dimension, for point-cloud backbones
(DGCNN's dynamic graphs in feature space) and local frames.

One padded ``[G, n, n]`` distance matrix per chunk of graphs and :func:`torch.topk`: a few
large tensor operations instead of :func:`equigraph.graph.knn_graph`'s chunked all-pairs
scan over ``[2, E]`` index lists, so it suits batches of equal-size clouds (hundreds of
points each) and works for features of any width. Memory is bounded by ``max_elements``
distance entries per chunk.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from torch_geometric.utils import to_dense_batch

from equigraph.graph.checks import check_batch, check_positive_int

__all__ = ["knn_index", "knn_edge_index"]


def knn_index(x: Tensor, k: int, batch: Optional[Tensor] = None, *, loop: bool = True,
              max_elements: int = 2 ** 24) -> Tensor:
    r"""The ``k`` nearest nodes of every node within its graph, in the Euclidean metric of
    the rows of ``x`` (positions or features).

    Args:
        x (Tensor): ``[N, D]`` points or features (not differentiated through).
        k (int): neighbours per node.
        batch (Tensor, optional): graph of every node, in any order. (default: one graph)
        loop (bool, optional): count the node itself (at distance 0) among its ``k``
            nearest. (default: :obj:`True`)
        max_elements (int, optional): distance entries computed at once. (default: ``2**24``)

    Shapes:
        - **input:** x :math:`(N, D)`, batch :math:`(N)`
        - **output:** :math:`(N, k)` global node indices, nearest first

    Raises:
        ValueError: for a bad ``x``, ``k`` or ``batch``, or a graph with fewer than ``k``
            nodes (``k + 1`` without ``loop``).

    Ties between equal distances are broken by :func:`torch.topk`, not by index.

    Example:
        >>> x = torch.tensor([[0.0], [1.0], [3.0], [10.0], [11.5], [0.0]])
        >>> knn_index(x, 2, torch.tensor([0, 0, 0, 1, 1, 1]), loop=False)
        tensor([[1, 2],
                [0, 2],
                [1, 0],
                [4, 5],
                [3, 5],
                [3, 4]])
    """
    if not isinstance(x, Tensor) or x.dim() != 2 or not x.is_floating_point():
        what = f"{x.dtype} of shape {list(x.shape)}" if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"`x` must be a floating-point [N, D] tensor, got {what}")
    k = check_positive_int(k, "k")
    n_total = x.size(0)
    batch = check_batch(batch, n_total, device=x.device)
    if n_total == 0:
        return torch.zeros(0, k, dtype=torch.long, device=x.device)
    x = x.detach()
    if not bool(torch.isfinite(x).all()):
        raise ValueError("`x` contains NaN or inf")
    perm = None
    if n_total > 1 and not bool((batch[1:] >= batch[:-1]).all()):
        perm = torch.argsort(batch, stable=True)
        x, batch = x[perm], batch[perm]
    counts = torch.bincount(batch)
    need = k if loop else k + 1
    small = ((counts > 0) & (counts < need)).nonzero().flatten()
    if small.numel():
        g = int(small[0])
        raise ValueError(f"`k` = {k} needs at least {need} nodes per graph ({'with' if loop else 'without'} the "
                         f"node itself), but graph {g} has {int(counts[g])}")
    if x.size(1) == 3:
        # Points in space: the graph package's k-NN (k-d tree or blocked dense scan).
        from equigraph.graph.knn import knn_neighbours

        out = knn_neighbours(x, k, batch, loop=loop)
        # Nearest first (stable: ties keep knn_neighbours' ascending index order).
        order = torch.argsort((x[out] - x.unsqueeze(1)).square().sum(-1), dim=1, stable=True)
        out = torch.gather(out, 1, order)
        if perm is not None:
            out = perm[out]
            restored = torch.empty_like(out)
            restored[perm] = out
            out = restored
        return out
    dense, mask = to_dense_batch(x, batch, batch_size=counts.numel())
    G, n, d = dense.shape
    offsets = torch.cumsum(counts, 0) - counts
    out = torch.empty(G, n, k, dtype=torch.long, device=x.device)
    per_graph = n * n * (d if d <= 3 else 1)
    step = max(1, int(max_elements) // max(per_graph, 1))
    for start in range(0, G, step):
        xd = dense[start:start + step]
        if d <= 3:  # exact differences: cheap in 3-D and free of cancellation
            dist = (xd.unsqueeze(2) - xd.unsqueeze(1)).pow(2).sum(-1)
        else:
            sq = xd.pow(2).sum(-1)
            dist = (sq.unsqueeze(2) + sq.unsqueeze(1) - 2 * xd @ xd.transpose(1, 2)).clamp_(min=0)
        dist.masked_fill_(~mask[start:start + step].unsqueeze(1), float("inf"))
        if not loop:
            dist.diagonal(dim1=1, dim2=2).fill_(float("inf"))
        idx = dist.topk(k, dim=-1, largest=False).indices
        out[start:start + step] = idx + offsets[start:start + step].view(-1, 1, 1)
    index = out[mask]
    if perm is not None:
        index = perm[index]
        unsorted = torch.empty_like(index)
        unsorted[perm] = index
        index = unsorted
    return index


def knn_edge_index(index: Tensor) -> Tensor:
    r"""``[2, N k]`` ``edge_index`` of a :func:`knn_index` result in PyG's
    ``source_to_target`` flow: ``edge_index[0]`` the neighbour ``j``, ``edge_index[1]`` the
    centre ``i``, sorted by centre.

    >>> knn_edge_index(torch.tensor([[1, 2], [0, 2], [1, 0]]))
    tensor([[1, 2, 0, 2, 1, 0],
            [0, 0, 1, 1, 2, 2]])
    """
    n, k = index.shape
    centre = torch.arange(n, device=index.device).repeat_interleave(k)
    return torch.stack([index.reshape(-1), centre], dim=0)
