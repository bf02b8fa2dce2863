"""Radius graphs, open and periodic, with a choice of backends.

Every backend returns the same edge set in the same order; they differ only in speed. The
same set, not merely nearly the same: whatever arithmetic a backend searches with, the
edges at the cutoff (and the coincidence check) are decided by one float64 formula on the
positions given, :mod:`equigraph.graph.cutoff`.

* ``"brute"``: block-diagonal all pairs (plus periodic images), ``O(sum_g n_g^2 K_g)``;
  best for batches of small molecules, on CPU and GPU.
* ``"cell_list"``: torch binning, ``O(N)``; large systems on GPU (and CPU without vesin).
* ``"vesin"``: vesin's C++ cell list, one call per graph; large systems on CPU.
* ``"auto"``: chosen from the measurements in ``benchmarks/graphs.py`` (see
  :func:`choose_backend`).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from equigraph.graph.brute_force import block_pairs
from equigraph.graph.cell import complete_basis, plane_spacings, wrap_positions
from equigraph.graph.cell_list import cell_list_pairs
from equigraph.graph.checks import (
    check_batch,
    check_cell_pbc,
    check_cutoff,
    check_min_distance,
    check_pos,
    check_positive_int,
)
from equigraph.graph.coincidence import DEFAULT_MIN_DISTANCE, CoincidentEdge, coincidence_message
from equigraph.graph.cutoff import CutoffRule, reference_sq_dist
from equigraph.graph.edges import key_layout, nearest_mask, pack_keys, sort_keys, sort_order, squared_norm, unpack_keys
from equigraph.graph.vesin_backend import vesin_keys, vesin_pairs

BACKENDS = ("auto", "brute", "cell_list", "vesin")

# Threshold of ``backend="auto"``, measured with benchmarks/graphs.py and a sweep of
# random clouds at molecular density (0.1 atoms/Å^3, r = 5 Å, 4096 atoms in graphs of n,
# 1 thread, shared 2-core Xeon): brute force / vesin time = 1.08 (n = 32), 0.94 (64),
# 1.42 (128), 1.48 (256), 5.8 (512); periodic fcc Cu: brute loses from 32 atoms per cell
# on (5.0 vs 1.7 ms). So brute force runs while its candidate count ``sum_g n_g^2 K_g``
# stays below ``BRUTE_PER_ATOM`` per atom (open graphs up to ~64 atoms), vesin above on
# CPU. On GPU the torch cell list replaces vesin; no GPU was available to tune the GPU
# crossover, so it uses the same threshold.
BRUTE_PER_ATOM = 64


def choose_backend(device: torch.device, sizes: Tensor, images: Tensor) -> str:
    """The backend ``"auto"`` picks for graphs of ``sizes`` nodes with ``images`` periodic
    images each (1 for open graphs)."""
    candidates = int((sizes.double() ** 2 * images.double()).sum())
    if candidates <= BRUTE_PER_ATOM * max(int(sizes.sum()), 1):
        return "brute"
    return "vesin" if device.type == "cpu" else "cell_list"


def _image_table(reach: Tensor, basis: Tensor, dtype: torch.dtype):
    """Per-graph lists of lattice shifts ``[-reach, reach]^3`` as flat tables: ``(count [G],
    first [G], shifts [sum K, 3] int64, vectors [sum K, 3])``."""
    span = 2 * reach + 1
    count = span.prod(dim=1)
    first = torch.cumsum(count, 0) - count
    total = int(count.sum())
    g = torch.repeat_interleave(torch.arange(count.numel(), device=reach.device), count, output_size=total)
    t = torch.arange(total, device=reach.device) - first[g]
    sp = span[g]
    shifts = torch.stack([t // (sp[:, 1] * sp[:, 2]), (t // sp[:, 2]) % sp[:, 1], t % sp[:, 2]], dim=1) - reach[g]
    vectors = torch.bmm(shifts.to(basis.dtype).unsqueeze(1), basis[g]).squeeze(1).to(dtype)
    return count, first, shifts, vectors


def _brute_pairs(posw: Tensor, batch: Tensor, ptr: Tensor, rule: CutoffRule, loop: bool, table=None):
    images = None if table is None else table[0]
    out_c, out_j, out_s = [], [], []
    for c, j, t in block_pairs(batch, ptr, images):
        vec = posw.index_select(0, j) - posw.index_select(0, c)
        s = None
        if table is not None:
            _, first, shifts, vectors = table
            idx = first[batch[c]] + t
            vec = vec + vectors.index_select(0, idx)
            s = shifts.index_select(0, idx)
        d2 = squared_norm(vec)
        keep = d2 < rule.hi2  # candidates, with the margin; the rule decides
        if not loop:
            distinct = c != j
            if s is not None:
                distinct |= (s != 0).any(dim=1)
            keep &= distinct
        kept = keep.nonzero().squeeze(1)
        c, j, d2 = c.index_select(0, kept), j.index_select(0, kept), d2.index_select(0, kept)
        s = None if s is None else s.index_select(0, kept)
        keep = rule.decide(c, j, s, d2)
        if s is not None:
            out_s.append(s[keep])
        out_c.append(c[keep])
        out_j.append(j[keep])
    empty = torch.zeros(0, dtype=torch.long, device=posw.device)
    cat = lambda xs: torch.cat(xs) if xs else empty  # noqa: E731
    shift = torch.cat(out_s) if out_s else torch.zeros(0, 3, dtype=torch.long, device=posw.device)
    return cat(out_c), cat(out_j), shift


def _pairs(backend: str, posw: Tensor, pos_s: Tensor, batch_s: Tensor, ptr: Tensor, sizes: Tensor, num_graphs: int,
           rule: CutoffRule, loop: bool, periodic: bool, basis, pbc, frac, reach):
    """Unordered ``(centre, neighbour, shift int64)`` from one backend, in sorted-batch
    indices, shifts between wrapped positions."""
    device = posw.device
    if backend == "brute":
        table = _image_table(reach, basis, posw.dtype) if periodic else None
        c, j, s = _brute_pairs(posw, batch_s, ptr, rule, loop and not periodic, table)
    elif backend == "vesin":
        c, j, s = vesin_pairs(posw, rule, ptr, basis if periodic else None, pbc if periodic else None)
        if loop and not periodic:
            self_idx = torch.arange(posw.size(0))
            c, j = torch.cat([c, self_idx]), torch.cat([j, self_idx])
            s = torch.cat([s, torch.zeros(posw.size(0), 3, dtype=torch.long)])
    else:
        if periodic:
            cl_basis, cl_pbc, cl_frac = basis, pbc, frac
        else:
            cl_basis = torch.eye(3, dtype=torch.float64, device=device).expand(num_graphs, 3, 3)
            cl_pbc = torch.zeros(num_graphs, 3, dtype=torch.bool, device=device)
            cl_frac = pos_s.double()
        c, j, s = cell_list_pairs(posw, cl_frac, batch_s, sizes, cl_basis, cl_pbc, rule, loop and not periodic)
    return c.to(device), j.to(device), s.to(device)


def _search(pos: Tensor, r: float, batch: Tensor, cell: Optional[Tensor], pbc: Optional[Tensor],
            max_num_neighbors: Optional[int], loop: bool, backend: str, min_distance: float,
            out_dtype: torch.dtype = torch.long):
    """Shared driver: returns ``(edge_index, shift)``, ``shift`` in ``out_dtype`` (``None``
    when ``cell`` is ``None``)."""
    if backend not in BACKENDS:
        raise ValueError(f"`backend` must be one of {BACKENDS}, got {backend!r}")
    device = pos.device
    n = pos.size(0)
    periodic = cell is not None and bool(pbc.any())
    if n == 0:
        empty = torch.zeros(2, 0, dtype=torch.long, device=device)
        return empty, (torch.zeros(0, 3, dtype=out_dtype, device=device) if cell is not None else None)
    pos = pos.detach()

    # Work on nodes sorted by graph (stable, so node order within a graph is kept), then
    # map indices back: this is what makes an unsorted `batch` safe.
    is_sorted = n < 2 or bool((batch[1:] >= batch[:-1]).all())
    perm = None if is_sorted else torch.sort(batch, stable=True).indices
    batch_s = batch if perm is None else batch[perm]
    pos_s = pos if perm is None else pos[perm]
    num_graphs = int(batch_s[-1]) + 1
    if cell is not None:
        num_graphs = max(num_graphs, cell.size(0))
    sizes = torch.bincount(batch_s, minlength=num_graphs)
    ptr = torch.cat([sizes.new_zeros(1), torch.cumsum(sizes, 0)])

    if periodic:
        basis = complete_basis(cell, pbc)
        posw, frac, offset = wrap_positions(pos_s, batch_s, basis, pbc)
        rule = CutoffRule(pos_s, r, min_distance, batch=batch_s, basis=basis, pbc=pbc, offset=offset, posw=posw)
        spacing = plane_spacings(basis)
        reach = torch.where(pbc, torch.ceil(rule.search_r / spacing * (1 + 1e-9)), torch.zeros_like(spacing)).long()
        images = (2 * reach + 1).prod(dim=1)
    else:
        basis = offset = frac = reach = None
        posw = pos_s
        rule = CutoffRule(pos_s, r, min_distance, batch=batch_s)
        images = torch.ones_like(sizes)
    if backend == "auto":
        backend = choose_backend(device, sizes, images)

    shift_dtype = out_dtype if periodic else None
    key = layout = None
    try:
        if backend == "vesin" and perm is None:
            # reach bounds the lattice shifts between wrapped positions; +1 for rounding at
            # the cell faces (vesin_keys checks, and falls back below if one does not fit)
            layout = key_layout(n, int(reach.max()) + 1 if periodic else 0)
            if layout is not None:
                key = vesin_keys(posw, rule, ptr, basis if periodic else None, pbc if periodic else None,
                                 loop and not periodic, layout)
        if key is None:
            c, j, s = _pairs(backend, posw, pos_s, batch_s, ptr, sizes, num_graphs, rule, loop, periodic, basis, pbc,
                             frac, reach)
    except CoincidentEdge as err:
        raise ValueError(coincidence_message(err, min_distance, perm, batch_s, offset, num_graphs)) from None
    if key is None:
        if perm is not None:
            c, j = perm[c], perm[j]
        layout = key_layout(n, int(s.abs().max()) if periodic and s.numel() else 0)
        if layout is not None:
            key = sort_keys(pack_keys(c, j, s if periodic else None, layout))
    if key is not None:
        edge_index, shift = unpack_keys(key, layout, shift_dtype)
        del key
    else:  # indices too large to pack: lexicographic sort
        order = sort_order(c, j, n, s if periodic else None)
        if order is not None:
            c, j = c[order], j[order]
        edge_index = torch.stack([j, c], dim=0)
        shift = None
        if periodic:
            shift = (s if order is None else s[order]).to(shift_dtype)

    if periodic and bool(offset.any()):
        # Shifts found between wrapped positions, re-expressed for the positions given; the
        # correction depends on (centre, neighbour) only, so the order is unchanged.
        if perm is not None:
            offset = torch.empty_like(offset).index_copy_(0, perm, offset)
        shift += (offset[edge_index[1]] - offset[edge_index[0]]).to(shift_dtype)

    if max_num_neighbors is not None:
        # ranked by the distances the rule kept them by, so no backend's rounding breaks ties
        c, j = edge_index[1], edge_index[0]
        d2 = reference_sq_dist(pos.double(), c, j, shift.double() if periodic else None, basis, batch)
        keep = nearest_mask(c, d2, max_num_neighbors, n)
        edge_index = edge_index[:, keep]
        shift = shift[keep] if shift is not None else None
    if cell is not None and shift is None:
        shift = torch.zeros(edge_index.size(1), 3, dtype=out_dtype, device=device)
    return edge_index, shift


def radius_graph(pos: Tensor, r: float, batch: Optional[Tensor] = None, *, max_num_neighbors: Optional[int] = None,
                 loop: bool = False, backend: str = "auto", min_distance: float = DEFAULT_MIN_DISTANCE) -> Tensor:
    r"""All pairs of nodes of the same graph closer than ``r``: a drop-in for
    :func:`torch_geometric.nn.radius_graph` that needs neither torch-cluster nor pyg-lib.

    .. math::
        \mathcal{E} = \{(j, i) : \mathrm{batch}_i = \mathrm{batch}_j,\;
        \lVert \mathbf{x}_j - \mathbf{x}_i \rVert < r,\; j \ne i\}

    ``edge_index[0]`` is the neighbour ``j``, ``edge_index[1]`` the centre ``i`` (PyG's
    ``source_to_target`` flow); every pair appears in both directions. Edges are **sorted
    by centre, then neighbour**. ``batch`` may be in any order (edges never join two
    graphs, unlike PyG issue #10254), and may skip graph indices (empty graphs). An empty
    ``pos`` (``N = 0``) gives an empty ``[2, 0]`` edge index.

    **One rule at the cutoff.** Every backend returns exactly the pairs with
    ``(v_x^2 + v_y^2) + v_z^2 < r^2``, ``v = pos[j] - pos[i]``, evaluated in float64 from
    ``pos`` as given (:mod:`equigraph.graph.cutoff`), whatever the dtype of ``pos`` and
    the backend's own arithmetic: each backend gathers candidates with a margin a few
    float ulps of the coordinates wide and leaves the pairs within that margin of ``r`` to
    this formula. So backends agree to the last pair even in float32 at coordinates of
    hundreds of Å, where float32 itself is only good to ~1e-5 Å (an edge's float32
    length may thus be ``r`` plus that rounding). ``min_distance`` is judged on the same
    float64 distance.

    Args:
        pos (torch.Tensor): node positions.
        r (float): cutoff; pairs at distance strictly below ``r`` (by the float64 rule
            above) are connected.
        batch (torch.Tensor, optional): graph index of every node. (default: :obj:`None`,
            one graph)
        max_num_neighbors (int, optional): keep at most this many neighbours per centre,
            the **nearest** ones (ties broken by neighbour index), so the graph may then
            be asymmetric. (default: :obj:`None`, no cap: nothing is ever dropped)
        loop (bool, optional): add self loops ``(i, i)``. (default: :obj:`False`)
        backend (str, optional): ``"auto"``, ``"brute"``, ``"cell_list"`` or ``"vesin"``
            (CPU only). All return the same edges. (default: ``"auto"``)
        min_distance (float, optional): coincidence tolerance: an edge between two
            distinct nodes shorter than this raises (it would give NaN/inf in ``1/r`` or
            unit vectors later); requested self loops are exempt; ``0`` disables the
            check, for point clouds that repeat points on purpose. (default: ``1e-4``)

    Shapes:
        - **input:** pos :math:`(N, 3)`, batch :math:`(N)`
        - **output:** edge_index :math:`(2, E)`

    Raises:
        ValueError: for NaN/inf or non-``[N, 3]`` ``pos``, non-positive or non-finite
            ``r``, a ``batch`` of wrong length/dtype or with negative entries, a
            ``max_num_neighbors`` that is not a positive integer, an unknown backend, a
            negative ``min_distance``, or two nodes of a graph closer than
            ``min_distance`` (coincident atoms; the message names both, in the caller's
            numbering, and their graph).

    >>> pos = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [3.0, 0, 0]])
    >>> radius_graph(pos, 1.5)
    tensor([[1, 0],
            [0, 1]])
    """
    pos = check_pos(pos)
    r = check_cutoff(r)
    max_num_neighbors = check_positive_int(max_num_neighbors, "max_num_neighbors", allow_none=True)
    batch = check_batch(batch, pos.size(0), device=pos.device)
    min_distance = check_min_distance(min_distance)
    edge_index, _ = _search(pos, r, batch, None, None, max_num_neighbors, bool(loop), backend, min_distance)
    return edge_index


def periodic_radius_graph(pos: Tensor, r: float, cell: Tensor, pbc: Tensor, batch: Optional[Tensor] = None, *,
                          max_num_neighbors: Optional[int] = None, backend: str = "auto",
                          min_distance: float = DEFAULT_MIN_DISTANCE) -> tuple[Tensor, Tensor]:
    r"""Radius graph under periodic boundary conditions, with the lattice shift of every
    edge.

    .. math::
        \mathcal{E} = \{(j, i, \mathbf{S}) : \lVert \mathbf{x}_j - \mathbf{x}_i +
        \mathbf{S}\,\mathbf{C}_{\mathrm{batch}_i} \rVert < r,\; (j, \mathbf{S}) \ne (i, \mathbf{0})\}

    so ``vec = pos[j] - pos[i] + shift @ cell[batch[i]]`` (``docs/conventions.md``), equal
    to ASE's ``neighbor_list("D")``. As in :func:`radius_graph`, one rule decides at the
    cutoff for every backend: ``(v_x^2 + v_y^2) + v_z^2 < r^2`` with ``v = (pos[j] -
    pos[i]) + ((S_0 c_0 + S_1 c_1) + S_2 c_2)`` in float64 from the positions given and
    the cell in the dtype of ``pos`` (``c_k`` its rows, ``S`` the shift returned), however
    a backend wrapped the positions or formed image vectors.

    Triclinic cells, mixed periodicity (a slab ``[True, True, False]``, whose non-periodic
    cell row may be zero), positions outside the cell and cutoffs larger than the cell
    (many images; a self-image ``i == j``, ``shift != 0`` is a real neighbour) are all
    handled. Each pair appears in both
    directions with opposite shifts; edges are sorted by centre, neighbour, then shift.
    Along non-periodic directions the shift is 0.

    Args:
        pos (torch.Tensor): node positions, Å.
        r (float): cutoff (strict ``<``, by the float64 rule above).
        cell (torch.Tensor): lattice vectors as rows, ``[3, 3]`` or ``[G, 3, 3]``.
        pbc (torch.Tensor): periodicity along each lattice vector, ``[3]`` or ``[G, 3]``.
        batch (torch.Tensor, optional): graph index of every node. (default: :obj:`None`)
        max_num_neighbors (int, optional): keep the nearest ones only, ties broken by
            neighbour index then shift. (default: :obj:`None`, no cap)
        backend (str, optional): as in :func:`radius_graph`. (default: ``"auto"``)
        min_distance (float, optional): as in :func:`radius_graph`; also an atom sitting
            on a periodic image of another atom (or of itself) raises. (default: ``1e-4``)

    Shapes:
        - **input:** pos :math:`(N, 3)`, cell :math:`(G, 3, 3)`, pbc :math:`(G, 3)`,
          batch :math:`(N)`
        - **output:** edge_index :math:`(2, E)`, shift :math:`(E, 3)` (integer values in
          ``pos.dtype``)

    Raises:
        ValueError: as :func:`radius_graph`, and for a cell that is missing, non-finite or
            singular along a periodic direction, ``cell``/``pbc`` of the wrong shape, or an
            atom within ``min_distance`` of a periodic image of an atom (message with the
            shift).

    >>> cell = torch.eye(3) * 2.0
    >>> ei, shift = periodic_radius_graph(torch.zeros(1, 3), 2.5, cell, torch.tensor([True, True, True]))
    >>> ei.size(1), shift.tolist()[:2]
    (6, [[-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    """
    pos = check_pos(pos)
    r = check_cutoff(r)
    max_num_neighbors = check_positive_int(max_num_neighbors, "max_num_neighbors", allow_none=True)
    batch = check_batch(batch, pos.size(0), device=pos.device)
    num_graphs = int(batch.max()) + 1 if batch.numel() else 1
    cell, pbc = check_cell_pbc(cell, pbc, num_graphs, pos.dtype, pos.device)
    min_distance = check_min_distance(min_distance)
    return _search(pos, r, batch, cell, pbc, max_num_neighbors, False, backend, min_distance, pos.dtype)
