r"""k-nearest-neighbour graphs within each graph of a batch.

Three backends return the same edges in the same order; they differ only in speed:

* ``"dense"``: the graphs padded into ``[g, m, m]`` blocks of squared distances (bounded by
  ``DENSE_BUDGET`` entries, a block holding several small graphs or a row range of a large
  one) and :func:`torch.topk`; ``O(sum_g n_g^2)`` work in a few large tensor operations.
* ``"kdtree"``: :class:`scipy.spatial.cKDTree` per graph (CPU), ``O(n log n)``; for large
  graphs.
* ``"brute"``: the all-pairs scan over ``[2, E]`` index lists with a sort of every
  candidate (the original implementation, kept as the reference of the tests).
* ``"auto"``: ``"kdtree"`` on CPU when a graph has more than ``KDTREE_MIN_NODES`` nodes,
  else ``"dense"`` (thresholds measured by ``benchmarks/knn.py``).

One rule decides every backend's edges, so they agree exactly, not merely up to rounding:
the squared distance is ``((x_j - x_i)^2 + (y_j - y_i)^2) + (z_j - z_i)^2`` in the dtype of
``pos``, elementwise (:func:`pair_sq_dist`), and equal distances go to the smaller neighbour
index. The k-d tree only proposes candidates: it is queried in float64 for a few more
than ``k`` of them, the candidates are ranked by that rule, and a centre whose farthest
candidate is not clearly farther (beyond rounding) than its ``k``-th is decided by a
dense scan of its whole graph instead.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import Tensor

from equigraph.graph.brute_force import block_pairs
from equigraph.graph.checks import check_batch, check_pos, check_positive_int
from equigraph.graph.edges import nearest_mask, sort_order

__all__ = ["knn_graph", "knn_neighbours", "pair_sq_dist", "KNN_BACKENDS"]

KNN_BACKENDS = ("auto", "dense", "kdtree", "brute")

#: Squared distances held at once by the dense backend. Blocks of a few MB are reused by the
#: allocator; larger ones are fresh pages every time, which cost more than the arithmetic
#: (a float32 sum of 2048^2 elements ran ~7x slower per element than one of 512^2 here).
DENSE_BUDGET = 1 << 20

# ``"auto"`` threshold, from ``python benchmarks/knn.py`` (1 thread, k = 20, uniform random
# clouds, 2-core EPYC shared with other jobs): dense / k-d tree time for one graph of n nodes
# was 1.0 to 1.9 over two runs (n = 512), 1.65 (1,024), 2.6 (2,048), 3.7 (4,096), 10
# (16,384); for batches of small graphs the dense scan wins (256 graphs of 64: 0.40) or ties
# (64 graphs of 512: 1.0). So the k-d tree takes graphs of more than 512 nodes, on CPU only
# (scipy has no GPU tree; the dense scan is the GPU backend at any size).
KDTREE_MIN_NODES = 512

#: Extra k-d tree candidates per centre beyond ``k`` (and the centre itself): room for
#: near-ties, so that few centres fall back to the dense scan.
KDTREE_MARGIN = 4


def pair_sq_dist(centre: Tensor, neighbour: Tensor) -> Tensor:
    r"""``|neighbour - centre|^2`` over the last axis (3), broadcast over the others, as
    ``((dx^2 + dy^2) + dz^2)`` with one elementwise operation at a time, so that the value
    of a pair does not depend on the shape it was computed in (no reduction kernels, no
    matrix products whose summation order varies).

    >>> pair_sq_dist(torch.zeros(1, 3), torch.tensor([[1.0, 2.0, 2.0]]))
    tensor([9.])
    """
    d = (neighbour[..., 0] - centre[..., 0]).square_()
    d += (neighbour[..., 1] - centre[..., 1]).square_()
    d += (neighbour[..., 2] - centre[..., 2]).square_()
    return d


def _select(d: Tensor, k: int) -> Tensor:
    """``[..., min(k, m)]`` column indices of the ``k`` smallest entries of every row of
    ``d`` (``inf``: not a candidate), ascending by column, ``-1`` where a row has fewer
    finite entries; equal distances are decided by the smaller column."""
    m = d.size(-1)
    kk = min(k, m)
    # One more than needed: the topk set is the answer unless the next value equals the
    # k-th (a tie at the boundary, which topk breaks arbitrarily).
    vals, idx = d.topk(min(kk + 1, m), dim=-1, largest=False, sorted=True)
    if kk < m:
        ambiguous = torch.isfinite(vals[..., kk - 1]) & (vals[..., kk] == vals[..., kk - 1])
        vals, idx = vals[..., :kk], idx[..., :kk]
    else:
        ambiguous = None
    idx = idx.masked_fill(torch.isinf(vals), m)
    if ambiguous is not None and bool(ambiguous.any()):
        rows = d[ambiguous]
        v = vals[ambiguous][:, -1:]
        less = rows < v
        tie = rows == v
        need = kk - less.sum(dim=-1, keepdim=True)
        keep = less | (tie & (tie.cumsum(dim=-1) <= need))
        # exactly kk kept per row; nonzero lists them row by row, ascending
        idx[ambiguous] = keep.nonzero()[:, -1].view(-1, kk)
    idx = idx.sort(dim=-1).values
    return idx.masked_fill_(idx == m, -1)


def _put(out: Tensor, rows, values: Tensor) -> None:
    """``out[rows] = values`` for ``values`` narrower or wider than ``out`` (columns past
    a graph's candidates are ``-1`` in both)."""
    w = min(out.size(1), values.size(-1))
    if w:
        out[rows, :w] = values[:, :w]


def _block_sq_dist(centre: Tensor, neighbour: Tensor) -> Tensor:
    """:func:`pair_sq_dist` of every centre ``[b, r, 3]`` with every neighbour ``[b, m, 3]``,
    ``[b, r, m]``, from contiguous coordinate planes (the same operations, value for value)."""
    c = centre.permute(2, 0, 1).unsqueeze(-1)  # [3, b, r, 1]
    n = neighbour.permute(2, 0, 1).unsqueeze(-2)  # [3, b, 1, m]
    d = (n[0] - c[0]).square_()
    d += (n[1] - c[1]).square_()
    d += (n[2] - c[2]).square_()
    return d


def _dense_rows(pos_s: Tensor, starts: Tensor, sizes: Tensor, k: int, loop: bool, out: Tensor) -> None:
    """Fill ``out`` (``[N, kk]``, sorted-node indexing) for the graphs ``starts``/``sizes``
    of ``pos_s`` (nodes sorted by graph), padded in blocks of at most ``DENSE_BUDGET``
    distances; a graph too large for one block is split into row ranges."""
    G = sizes.numel()
    if G == 0:
        return
    sizes_l, starts_l = sizes.tolist(), starts.tolist()
    device = pos_s.device
    g = 0
    while g < G:
        m = sizes_l[g]
        if m * m > DENSE_BUDGET:  # one large graph: ranges of rows against all its nodes
            s = starts_l[g]
            pts = pos_s[s:s + m].unsqueeze(0)
            step = max(1, DENSE_BUDGET // m)
            for r0 in range(0, m, step):
                r1 = min(m, r0 + step)
                d = _block_sq_dist(pts[:, r0:r1], pts)[0]
                if not loop:
                    d[torch.arange(r1 - r0, device=device), torch.arange(r0, r1, device=device)] = float("inf")
                idx = _select(d, k)
                _put(out, slice(s + r0, s + r1), torch.where(idx >= 0, idx + s, idx))
            g += 1
            continue
        # consecutive graphs while the padded block stays within the budget
        h, width = g, 0
        while h < G and max(width, sizes_l[h]) ** 2 * (h - g + 1) <= DENSE_BUDGET:
            width = max(width, sizes_l[h])
            h += 1
        sz, st = sizes[g:h], starts[g:h]
        col = torch.arange(width, device=device)
        valid = col.unsqueeze(0) < sz.unsqueeze(1)  # [b, width]
        node = (st.unsqueeze(1) + col).clamp_(max=pos_s.size(0) - 1)
        pts = pos_s[node]  # [b, width, 3]
        d = _block_sq_dist(pts, pts)  # [b, width, width]
        if not bool(valid.all()):
            d.masked_fill_(~valid.unsqueeze(1), float("inf"))
        if not loop:
            d.diagonal(dim1=1, dim2=2).fill_(float("inf"))
        idx = _select(d, k)  # [b, width, kk]
        idx = torch.where(idx >= 0, idx + st.view(-1, 1, 1), idx)
        _put(out, node[valid], idx[valid])
        g = h


def _kdtree_rows(pos_s: Tensor, starts: list, sizes: list, k: int, loop: bool, out: Tensor) -> None:
    """Fill ``out`` rows of the graphs ``starts``/``sizes`` from k-d tree candidates (one
    tree per graph), ranked by :func:`pair_sq_dist` all at once; centres whose candidates
    may miss a tie or near-tie go to the dense scan of their graph."""
    from scipy.spatial import cKDTree

    want = k + 1 + KDTREE_MARGIN
    xyz = pos_s.detach().double().cpu().numpy()
    total = sum(sizes)
    cand = np.full((total, want), -1, dtype=np.int64)
    dist = np.full((total, want), np.inf)
    centre = np.empty(total, dtype=np.int64)
    short = np.zeros(total, dtype=bool)  # the whole graph is among the candidates
    row = 0
    workers = max(1, torch.get_num_threads())
    for s, n in zip(starts, sizes):
        q = min(n, want)
        pts = xyz[s:s + n]
        dd, jj = cKDTree(pts).query(pts, k=list(range(1, q + 1)), workers=workers)
        cand[row:row + n, :q] = jj + s
        dist[row:row + n, :q] = dd
        centre[row:row + n] = np.arange(s, s + n)
        short[row:row + n] = q == n
        row += n
    cand_t = torch.from_numpy(cand).to(pos_s.device)
    centre_t = torch.from_numpy(centre).to(pos_s.device)
    usable = cand_t >= 0
    if not loop:
        usable &= cand_t != centre_t.unsqueeze(1)
    dist_t = torch.from_numpy(dist).to(pos_s.device).masked_fill_(~usable, torch.inf)
    # Complete when every point outside the candidates is farther, beyond rounding in
    # either arithmetic, than the k-th usable candidate.
    dk = dist_t.sort(dim=1).values[:, k - 1]
    eps, tiny = torch.finfo(pos_s.dtype).eps, torch.finfo(pos_s.dtype).tiny
    last = torch.from_numpy(dist[:, -1]).to(pos_s.device)
    complete = torch.from_numpy(short).to(pos_s.device) | (last > dk * (1 + 64 * eps) + 4 * tiny)
    cand_c = cand_t.clamp(min=0)
    d = pair_sq_dist(pos_s[centre_t].unsqueeze(1), pos_s[cand_c]).masked_fill_(~usable, float("inf"))
    # Rank by (distance, index): order by index first, then a stable sort by distance.
    big = pos_s.size(0)
    by_index = torch.where(usable, cand_c, big).sort(dim=1)
    d = d.gather(1, by_index.indices)
    kk = out.size(1)
    d_sorted, order = torch.sort(d, dim=1, stable=True)
    chosen = by_index.values.gather(1, order[:, :kk]).masked_fill_(d_sorted[:, :kk].isinf(), big)
    chosen = chosen.sort(dim=1).values
    chosen.masked_fill_(chosen == big, -1)
    _put(out, centre_t[complete], chosen[complete])
    redo = (~complete).nonzero().flatten()
    if redo.numel():
        graph = np.searchsorted(np.asarray(starts), centre[redo.cpu().numpy()], side="right") - 1
        for gi in np.unique(graph).tolist():
            s, n = starts[gi], sizes[gi]
            r = centre_t[redo[torch.from_numpy(graph == gi).to(redo.device)]] - s
            pts = pos_s[s:s + n].unsqueeze(0)
            step = max(1, DENSE_BUDGET // n)
            for a in range(0, r.numel(), step):
                rr = r[a:a + step]
                dd = _block_sq_dist(pts[:, rr], pts)[0]
                if not loop:
                    dd[torch.arange(rr.numel(), device=pos_s.device), rr] = float("inf")
                idx = _select(dd, k)
                _put(out, s + rr, torch.where(idx >= 0, idx + s, idx))


def knn_neighbours(pos: Tensor, k: int, batch: Optional[Tensor] = None, *, loop: bool = False,
                   backend: str = "auto") -> Tensor:
    r"""The ``k`` nearest nodes of every node within its graph, as an ``[N, min(k, n_max)]``
    matrix of node indices, each row ascending, ``-1`` where the node's graph has fewer
    than ``k`` candidates; the edges of :func:`knn_graph` row by row.

    Args:
        pos (torch.Tensor): node positions.
        k (int): number of neighbours per node.
        batch (torch.Tensor, optional): graph index of every node, in any order.
            (default: :obj:`None`)
        loop (bool, optional): count the node itself among its ``k`` nearest.
            (default: :obj:`False`)
        backend (str, optional): ``"auto"``, ``"dense"``, ``"kdtree"`` (CPU) or
            ``"brute"``. (default: :obj:`"auto"`)

    Shapes:
        - **input:** pos :math:`(N, 3)`, batch :math:`(N)`
        - **output:** :math:`(N, \min(k, n_{max}))`, or :math:`(N, \min(k, n_{max} - 1))`
          without ``loop``

    >>> knn_neighbours(torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [3.0, 0, 0]]), 1)
    tensor([[1],
            [0],
            [1]])
    """
    pos = check_pos(pos)
    k = check_positive_int(k, "k")
    if backend not in KNN_BACKENDS:
        raise ValueError(f"`backend` must be one of {KNN_BACKENDS}, got {backend!r}")
    if backend == "kdtree" and pos.device.type != "cpu":
        raise ValueError(f"backend='kdtree' needs CPU tensors (scipy), got `pos` on {pos.device}")
    n = pos.size(0)
    batch = check_batch(batch, n, device=pos.device)
    if n == 0:
        return torch.zeros(0, 0, dtype=torch.long, device=pos.device)
    pos = pos.detach()
    if backend == "brute":
        edge_index = _brute_knn(pos, k, batch, loop)
        return _as_matrix(edge_index, n, k, batch, loop)
    perm = None
    if n > 1 and bool((batch[1:] < batch[:-1]).any()):
        perm = torch.sort(batch, stable=True).indices
        pos_s, batch_s = pos[perm], batch[perm]
    else:
        pos_s, batch_s = pos, batch
    sizes = torch.bincount(batch_s)
    sizes = sizes[sizes > 0]
    starts = torch.cumsum(sizes, 0) - sizes
    n_max = int(sizes.max())
    kk = max(0, min(k, n_max if loop else n_max - 1))
    out = torch.full((n, kk), -1, dtype=torch.long, device=pos.device)
    if kk > 0:
        if backend == "auto":
            large = sizes > KDTREE_MIN_NODES if pos.device.type == "cpu" else torch.zeros_like(sizes, dtype=torch.bool)
        else:
            large = torch.full_like(sizes, backend == "kdtree", dtype=torch.bool)
        if not bool(large.all()):
            small = ~large
            _dense_rows(pos_s, starts[small], sizes[small], k, loop, out)
        if bool(large.any()):
            _kdtree_rows(pos_s, starts[large].tolist(), sizes[large].tolist(), k, loop, out)
    if perm is not None:
        # perm is increasing within a graph, so mapped rows stay ascending
        mapped = torch.where(out >= 0, perm[out.clamp(min=0)], out)
        out = torch.empty_like(mapped)
        out[perm] = mapped
    return out


def _as_matrix(edge_index: Tensor, n: int, k: int, batch: Tensor, loop: bool) -> Tensor:
    """The ``[N, kk]`` matrix of an edge list sorted by centre, then neighbour."""
    sizes = torch.bincount(batch)
    n_max = int(sizes.max())
    kk = max(0, min(k, n_max if loop else n_max - 1))
    j, c = edge_index
    counts = torch.bincount(c, minlength=n)
    rank = torch.arange(c.numel(), device=c.device) - (torch.cumsum(counts, 0) - counts)[c]
    out = torch.full((n, kk), -1, dtype=torch.long, device=edge_index.device)
    out[c, rank] = j
    return out


def _brute_knn(pos: Tensor, k: int, batch: Tensor, loop: bool) -> Tensor:
    """The original all-pairs scan: every candidate pair of a chunk as index lists, capped
    per centre by a sort (``O(sum_g n_g^2 log)``, bounded memory)."""
    n = pos.size(0)
    perm = torch.sort(batch, stable=True).indices
    batch_s, pos_s = batch[perm], pos[perm]
    sizes = torch.bincount(batch_s)
    ptr = torch.cat([sizes.new_zeros(1), torch.cumsum(sizes, 0)])
    out_c, out_j = [], []
    for c, j, _ in block_pairs(batch_s, ptr):
        if not loop:
            keep = c != j
            c, j = c[keep], j[keep]
        d2 = pair_sq_dist(pos_s[c], pos_s[j])
        # centres of a chunk are contiguous and complete, so capping per chunk is exact
        first = int(c[0]) if c.numel() else 0
        mask = nearest_mask(c - first, d2, k, int(c[-1]) - first + 1 if c.numel() else 0)
        out_c.append(c[mask])
        out_j.append(j[mask])
    c, j = perm[torch.cat(out_c)], perm[torch.cat(out_j)]
    order = sort_order(c, j, n)
    if order is not None:
        c, j = c[order], j[order]
    return torch.stack([j, c], dim=0)


def knn_graph(pos: Tensor, k: int, batch: Optional[Tensor] = None, *, loop: bool = False,
              backend: str = "auto") -> Tensor:
    r"""Connect every node to its ``k`` nearest nodes of the same graph.

    .. math::
        \mathcal{E} = \{(j, i) : j \in \mathrm{kNN}_k(i),\; \mathrm{batch}_j = \mathrm{batch}_i\}

    ``edge_index[0]`` is the neighbour ``j``, ``edge_index[1]`` the centre ``i`` (PyG's
    ``source_to_target`` flow, like :func:`torch_geometric.nn.knn_graph`). Distances are
    :func:`pair_sq_dist` in the dtype of ``pos``; ties are broken by the smaller neighbour
    index, so the result is deterministic and the same for every backend. A node of a
    graph with fewer than ``k + 1`` nodes gets every other node of its graph. The graph is
    in general not symmetric. Edges are sorted by centre, then neighbour; ``batch`` may be
    in any order.

    The search is a dense padded scan (``O(sum_g n_g^2)`` in blocks of bounded memory) or,
    for graphs of more than ``KDTREE_MIN_NODES`` nodes on CPU, a k-d tree
    (:class:`scipy.spatial.cKDTree`, ``O(n log n)``); see the module docstring.

    Args:
        pos (torch.Tensor): node positions.
        k (int): number of neighbours per node.
        batch (torch.Tensor, optional): graph index of every node. (default: :obj:`None`)
        loop (bool, optional): count the node itself as one of its ``k`` nearest (at
            distance 0). (default: :obj:`False`)
        backend (str, optional): ``"auto"``, ``"dense"``, ``"kdtree"`` (CPU only) or
            ``"brute"``; all return the same edges. (default: :obj:`"auto"`)

    Shapes:
        - **input:** pos :math:`(N, 3)`, batch :math:`(N)`
        - **output:** edge_index :math:`(2, E)`, :math:`E \le kN`

    Raises:
        ValueError: for a ``k`` that is not a positive integer, an unknown ``backend``,
            ``"kdtree"`` on a GPU tensor, and the bad inputs of
            :func:`equigraph.graph.radius_graph`.

    >>> pos = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [3.0, 0, 0]])
    >>> knn_graph(pos, 1)
    tensor([[1, 0, 1],
            [0, 1, 2]])
    """
    pos = check_pos(pos)
    k = check_positive_int(k, "k")
    if backend == "brute":
        n = pos.size(0)
        batch = check_batch(batch, n, device=pos.device)
        if n == 0:
            return torch.zeros(2, 0, dtype=torch.long, device=pos.device)
        return _brute_knn(pos.detach(), k, batch, loop)
    nb = knn_neighbours(pos, k, batch, loop=loop, backend=backend)
    n, kk = nb.shape
    centre = torch.arange(n, device=pos.device).repeat_interleave(kk)
    j = nb.reshape(-1)
    keep = j >= 0
    if not bool(keep.all()):
        centre, j = centre[keep], j[keep]
    return torch.stack([j, centre], dim=0)
