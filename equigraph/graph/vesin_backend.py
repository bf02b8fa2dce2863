"""Neighbour search through `vesin <https://github.com/Luthaf/vesin>`_ (C++ cell lists,
CPU numpy arrays), one call per graph of the batch.

vesin 0.6 handles mixed periodicity and cutoffs larger than the cell (it returns every
image, self-images included); the tests check both against ASE. It needs cupy for GPU
arrays, which equigraph does not depend on, so GPU tensors never come here.

:func:`vesin_keys` is the fast path: it reads vesin's buffers in place (``copy=False``)
and turns them straight into sorted packed edge keys (:func:`~equigraph.graph.edges.key_layout`),
so a search costs vesin's own time plus one integer sort, with no int64 copies of the
raw arrays, no argsort and no gathers.

vesin runs with the cutoff ``rule.search_r`` (a hair above ``r``) and always returns its
distances: the positions it gets are already rounded by the wrapping, so a pair just inside
``r`` by the float64 rule (:mod:`equigraph.graph.cutoff`) may be just outside by vesin's
arithmetic; the rule then decides the pairs near ``r`` from vesin's distances.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import Tensor

from equigraph.graph.cutoff import CutoffRule


def _check_device(pos: Tensor) -> None:
    if pos.device.type != "cpu":
        raise ValueError(f"backend='vesin' needs CPU tensors (no GPU arrays without cupy), got `pos` on {pos.device}")


def _compute(nl, xyz, box, periodic, rule: CutoffRule, first: int):
    """vesin's ``(i, j, S or None)`` for one graph (buffers in place) and the mask of the
    pairs the cutoff rule keeps (``None``: all), raising
    :class:`~equigraph.graph.coincidence.CoincidentEdge` as the rule does. vesin writes
    the distances it computed anyway ("d", ~5% more time at 100k atoms)."""
    if periodic is not None:
        i, j, s, d = nl.compute(xyz, box, periodic, "ijSd", copy=False)
    else:
        i, j, d = nl.compute(xyz, box, False, "ijd", copy=False)
        s = None
    if not d.size:
        return i, j, s, None
    keep = rule.decide(torch.from_numpy(i.view(np.int64)), torch.from_numpy(j.view(np.int64)),
                       None if s is None else torch.from_numpy(s), torch.from_numpy(d), first, squared=False).numpy()
    return i, j, s, (None if keep.all() else keep)


def _graphs(pos: Tensor, ptr: Tensor, basis: Optional[Tensor], pbc: Optional[Tensor]):
    """Yield ``(first node, positions, box, periodic)`` for every non-empty graph."""
    xyz = pos.detach().double().numpy()
    bounds = ptr.tolist()
    boxes = basis.detach().double().cpu().numpy() if basis is not None else None
    periodic = pbc.cpu().numpy() if pbc is not None else None
    zero_box = np.zeros((3, 3))
    for g in range(len(bounds) - 1):
        a, b = bounds[g], bounds[g + 1]
        if b == a:
            continue
        if periodic is not None and periodic[g].any():
            yield a, xyz[a:b], boxes[g], periodic[g].tolist()
        else:
            yield a, xyz[a:b], zero_box, None


def vesin_keys(pos: Tensor, rule: CutoffRule, ptr: Tensor, basis: Optional[Tensor], pbc: Optional[Tensor],
               loop: bool, layout: tuple[int, int, int]) -> Optional[Tensor]:
    """Sorted packed keys (``int64 [E]``) of all edges of each graph ``g`` by the cutoff
    ``rule`` (nodes ``ptr[g]:ptr[g+1]`` of a batch sorted by graph), in global indices,
    shifts in rows of ``basis``; self loops ``(i, i, 0)`` added when ``loop``. ``None`` if a
    shift does not fit ``layout`` (the caller then uses :func:`vesin_pairs`). Coincident
    atoms raise :class:`~equigraph.graph.coincidence.CoincidentEdge`."""
    from vesin import NeighborList

    _check_device(pos)
    node_bits, shift_bits, m = layout
    centre_at, neighbour_at = node_bits + 3 * shift_bits, 3 * shift_bits
    zero_code = sum(m << ((2 - d) * shift_bits) for d in range(3)) if shift_bits else 0
    nl = NeighborList(cutoff=rule.search_r, full_list=True)
    keys = []
    for a, xyz, box, periodic in _graphs(pos, ptr, basis, pbc):
        i, j, s, keep = _compute(nl, xyz, box, periodic, rule, a)
        # vesin's buffers (valid until the next compute) are read, and used as scratch, in
        # place: the key is the only array allocated here, 8 bytes per edge
        i, j = i.view(np.int64), j.view(np.int64)
        key = np.left_shift(i, centre_at)
        np.left_shift(j, neighbour_at, out=j)
        key |= j
        offset = (a << centre_at) + (a << neighbour_at) + zero_code
        if s is not None and s.size:
            if int(np.abs(s).max()) > m:
                return None
            # code = sum_d (s_d + m) << (2 - d) b: sums of shifted signed parts, carry-free
            s[:, 0] *= 1 << 2 * shift_bits
            s[:, 1] *= 1 << shift_bits
            key += s[:, 0]
            key += s[:, 1]
            key += s[:, 2]
        if offset:
            key += offset
        if keep is not None:
            key = key[keep]
        if loop:
            idx = np.arange(a, a + len(xyz), dtype=np.int64)
            key = np.concatenate([key, (idx << centre_at) + (idx << neighbour_at) + zero_code])
        # graphs come in node order, so per-graph sorted keys concatenate to sorted keys
        key.sort()
        keys.append(key)
    del nl
    if not keys:
        return torch.zeros(0, dtype=torch.long)
    return torch.from_numpy(keys[0] if len(keys) == 1 else np.concatenate(keys))


def vesin_pairs(pos: Tensor, rule: CutoffRule, ptr: Tensor, basis: Optional[Tensor], pbc: Optional[Tensor]):
    """Edges by the cutoff ``rule`` of each graph ``g`` (nodes ``ptr[g]:ptr[g+1]`` of a batch
    sorted by graph). Returns ``(centre, neighbour, shift)`` in global indices, unordered,
    shift as ``int64`` ``[E, 3]`` counted in rows of ``basis`` (zeros when ``basis`` is
    ``None``); coincident atoms raise as in :func:`vesin_keys`."""
    from vesin import NeighborList

    _check_device(pos)
    nl = NeighborList(cutoff=rule.search_r, full_list=True)
    out_i, out_j, out_s = [], [], []
    for a, xyz, box, periodic in _graphs(pos, ptr, basis, pbc):
        i, j, s, keep = _compute(nl, xyz, box, periodic, rule, a)
        if keep is not None:
            i, j, s = i[keep], j[keep], (None if s is None else s[keep])
        if s is None:
            s = np.zeros((len(i), 3), dtype=np.int64)
        out_i.append(i.view(np.int64) + a)
        out_j.append(j.view(np.int64) + a)
        out_s.append(s.astype(np.int64))
    if not out_i:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty, torch.zeros(0, 3, dtype=torch.long)
    cat = lambda xs: torch.from_numpy(xs[0] if len(xs) == 1 else np.concatenate(xs))  # noqa: E731
    return cat(out_i), cat(out_j), cat(out_s)
