"""Cell-list (binning) neighbour search in pure torch: linear in the number of atoms, runs
on any device, handles batches, triclinic cells, mixed periodicity and cutoffs larger than
the cell.

Atoms are binned in fractional coordinates of a full-rank basis (the cell along periodic
directions, orthonormal fill-ins along the others). A bin is at least ``r / SUBDIVISION``
wide measured between lattice planes, so two atoms closer than ``r`` sit at most
``ceil(r * nbins / spacing)`` bins apart along each direction; periodic directions wrap
with a lattice shift, which yields every periodic image (self-images included) when the
cutoff exceeds the cell.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.utils import scatter

from equigraph.graph.brute_force import centre_chunks
from equigraph.graph.cell import plane_spacings
from equigraph.graph.cutoff import CutoffRule
from equigraph.graph.edges import squared_norm

#: Bins per cutoff length. Measured on fcc Cu at r = 5 Å (benchmarks/graphs.py): 2 visits
#: ~125 small bins (~15.6 r^3 of volume per atom) instead of 27 large ones (27 r^3).
SUBDIVISION = 2
#: At most this many bins per atom of a graph, so sparse or vacuum-heavy systems do not
#: allocate huge empty grids (bins only need to be *at least* the minimal width).
MAX_BINS_PER_ATOM = 2.0
#: (centre, bin-offset) rows and candidate pairs materialised per chunk.
ROW_CHUNK = 1 << 20
PAIR_CHUNK = 1 << 22


def _grid(frac: Tensor, batch: Tensor, sizes: Tensor, spacing: Tensor, pbc: Tensor, r: float):
    """Bins per direction ``[G, 3]``, the lower corner and width of the binned region in
    fractional units, and the bin-offset reach ``[G, 3]`` needed for a cutoff ``r``."""
    num_graphs = sizes.numel()
    lo = scatter(frac, batch, dim=0, dim_size=num_graphs, reduce="min")
    hi = scatter(frac, batch, dim=0, dim_size=num_graphs, reduce="max")
    lo = torch.where(pbc, torch.zeros_like(lo), lo)
    width = torch.where(pbc, torch.ones_like(hi), hi - lo)
    min_width = r / spacing  # fractional extent of the cutoff along each direction
    nbins = torch.floor(width * SUBDIVISION / min_width * (1 - 1e-9)).clamp(min=1)
    budget = (sizes.double() * MAX_BINS_PER_ATOM).clamp(min=1)
    excess = (nbins.prod(dim=1) / budget).clamp(min=1).pow(1.0 / 3.0)
    nbins = torch.floor(nbins / excess.unsqueeze(1)).clamp(min=1)
    reach = torch.ceil(min_width * nbins / width.clamp(min=1e-300) * (1 + 1e-9))
    # along open directions offsets past the grid hold nothing: never look further than it
    reach = torch.where(pbc, reach, torch.minimum(reach, nbins - 1))
    return nbins.long(), lo, width, reach.long()


def cell_list_pairs(posw: Tensor, frac: Tensor, batch: Tensor, sizes: Tensor, basis: Tensor,
                    pbc: Tensor, rule: CutoffRule, loop: bool = False):
    """All pairs closer than ``rule.r`` for a batch **sorted** by graph.

    Args:
        posw (Tensor): ``[N, 3]`` positions wrapped into the cell along periodic directions.
        frac (Tensor): ``[N, 3]`` float64 coordinates of ``posw`` in ``basis``.
        batch (Tensor): ``[N]`` sorted graph index; ``sizes`` ``[G]`` nodes per graph.
        basis (Tensor): ``[G, 3, 3]`` full-rank basis (see :func:`complete_basis`).
        pbc (Tensor): ``[G, 3]`` bool.
        rule (CutoffRule): the cutoff: bins are sized for its ``search_r`` and it decides
            every candidate closer than that (and raises
            :class:`~equigraph.graph.coincidence.CoincidentEdge` for coincident atoms).
        loop (bool): keep ``i == j`` with zero shift.

    Returns:
        ``(centre, neighbour, shift)`` with ``shift`` ``int64`` ``[E, 3]`` in rows of
        ``basis``, unordered.
    """
    device = posw.device
    spacing = plane_spacings(basis)
    nbins, lo, width, reach = _grid(frac, batch, sizes, spacing, pbc, rule.search_r)
    num_graphs = sizes.numel()
    bins_per_graph = nbins.prod(dim=1)
    bin_ptr = torch.cumsum(bins_per_graph, 0) - bins_per_graph
    total_bins = int(bins_per_graph.sum())

    g_atom = batch
    scaled = (frac - lo[g_atom]) / width[g_atom].clamp(min=1e-300) * nbins[g_atom]
    coord = torch.minimum(torch.floor(scaled).long().clamp(min=0), nbins[g_atom] - 1)
    coord = torch.where(nbins[g_atom] == 1, torch.zeros_like(coord), coord)
    strides = torch.stack([nbins[:, 1] * nbins[:, 2], nbins[:, 2], torch.ones_like(nbins[:, 2])], dim=1)
    bin_id = bin_ptr[g_atom] + (coord * strides[g_atom]).sum(dim=1)
    atom_order = torch.sort(bin_id, stable=True).indices
    bin_count = torch.bincount(bin_id, minlength=total_bins)
    bin_start = torch.cumsum(bin_count, 0) - bin_count

    span = 2 * reach + 1
    offsets_per_graph = span.prod(dim=1)
    hi2 = rule.hi2

    out_c, out_j, out_s = [], [], []
    per_centre = offsets_per_graph[g_atom]
    for a, b in centre_chunks(per_centre, ROW_CHUNK):
        counts = per_centre[a:b]
        rows = int(counts.sum())
        c = torch.repeat_interleave(torch.arange(a, b, device=device), counts, output_size=rows)
        first = torch.cumsum(counts, 0) - counts
        t = torch.arange(rows, device=device) - torch.repeat_interleave(first, counts, output_size=rows)
        g = g_atom.index_select(0, c)
        # per-graph parameters of every row: a broadcast row for a single graph (no gather)
        if num_graphs == 1:
            per_row = lambda x: x[:1]  # noqa: E731
        else:
            per_row = lambda x: x.index_select(0, g)  # noqa: E731
        sp = per_row(span)
        off = torch.stack([t // (sp[:, 1] * sp[:, 2]), (t // sp[:, 2]) % sp[:, 1], t % sp[:, 2]], dim=1)
        off -= per_row(reach)
        target = coord.index_select(0, c) + off
        nb = per_row(nbins)
        periodic = per_row(pbc)
        shift = torch.where(periodic, torch.div(target, nb, rounding_mode="floor"), torch.zeros_like(target))
        target = torch.where(periodic, target - shift * nb, target)
        valid = ((target >= 0) & (target < nb)).all(dim=1)
        tbin = per_row(bin_ptr) + (target.clamp(min=0) * per_row(strides)).sum(dim=1)
        tbin = torch.where(valid, tbin, torch.zeros_like(tbin))
        cnt = torch.where(valid, bin_count.index_select(0, tbin) if total_bins else torch.zeros_like(tbin),
                          torch.zeros_like(tbin))
        # anchor = pos_i - shift @ basis, so that vec = pos_j - anchor. Only the rows that
        # wrap need an image, formed in float64 (then rounded once): a float32 matmul may
        # run in TF32 on GPU, far outside the margin of the cutoff rule
        anchor = posw.index_select(0, c)
        shift_nonzero = (shift != 0).any(dim=1)
        moved = shift_nonzero.nonzero().squeeze(1)
        if moved.numel():
            sm = shift.index_select(0, moved).to(basis.dtype)
            if num_graphs == 1:
                image = sm @ basis[0]
            else:
                image = torch.bmm(sm.unsqueeze(1), basis.index_select(0, g.index_select(0, moved))).squeeze(1)
            anchor.index_copy_(0, moved, anchor.index_select(0, moved) - image.to(posw.dtype))
        for p, q in centre_chunks(cnt, PAIR_CHUNK):
            cc = cnt[p:q]
            n_pairs = int(cc.sum())
            if n_pairs == 0:
                continue
            # index_select, not advanced indexing: several times faster on CPU for these
            # candidate-sized gathers (~4 candidates per kept pair)
            row = torch.repeat_interleave(torch.arange(p, q, device=device), cc, output_size=n_pairs)
            firstp = torch.cumsum(cc, 0) - cc
            rank = torch.arange(n_pairs, device=device) - torch.repeat_interleave(firstp, cc, output_size=n_pairs)
            j = atom_order.index_select(0, bin_start.index_select(0, tbin.index_select(0, row)) + rank)
            vec = posw.index_select(0, j) - anchor.index_select(0, row)
            d2 = squared_norm(vec)
            keep = d2 < hi2  # candidates, with the margin; the rule decides
            if not loop:
                keep &= (c.index_select(0, row) != j) | shift_nonzero.index_select(0, row)
            kept = keep.nonzero().squeeze(1)
            row = row.index_select(0, kept)
            ck, jk, sk = c.index_select(0, row), j.index_select(0, kept), shift.index_select(0, row)
            keep = rule.decide(ck, jk, sk, d2.index_select(0, kept))
            out_c.append(ck[keep])
            out_j.append(jk[keep])
            out_s.append(sk[keep])
    if not out_c:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty, torch.zeros(0, 3, dtype=torch.long, device=device)
    return torch.cat(out_c), torch.cat(out_j), torch.cat(out_s)
