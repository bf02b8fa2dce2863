r"""The one rule at the cutoff (and at ``min_distance``) shared by every radius backend.

The backends find pairs in their own arithmetic: float32 or float64 in the dtype of
``pos``, on positions wrapped into the cell, with image vectors formed in different
orders, or, for vesin, in float64 from positions already rounded by the wrapping. Their
rounding grows with the *coordinates*, not with the distance: float32 numbers near 350 Å
are 3e-5 Å apart, so two backends could disagree on pairs within ~1e-5 Å of the cutoff
(as the CUDA cell list and vesin did on a million-atom Cu cell). Hence one rule, evaluated
the same way for everyone:

.. math::
    \mathbf{v} = (\mathbf{x}_j - \mathbf{x}_i) + \big((S_0 \mathbf{c}_0 + S_1 \mathbf{c}_1)
    + S_2 \mathbf{c}_2\big), \qquad (j, i, \mathbf{S}) \text{ is an edge iff }
    (v_x^2 + v_y^2) + v_z^2 < r^2,

in float64 from the positions and cell as given (``cell`` in the dtype of ``pos``, ``S``
the shift returned), each operation an elementwise IEEE one in exactly this order: no
matrix product (BLAS, TF32 or FMA would change the last bit with the device or the size of
the call), so it gives the same bit on every device for every subset of pairs. Two
distinct atoms (or an atom and an image) of an edge closer than ``min_distance`` by the
same formula raise.

Evaluating it on every pair would cost a float64 gather per candidate; instead
:class:`CutoffRule` bounds the error ``eps`` of any backend's own distance (a few float
ulps of the largest coordinate, cell vector or cutoff involved), every backend gathers its
candidates with the cutoff ``r + eps``, and :meth:`CutoffRule.decide` keeps what its own
distance puts surely inside (``d < r - eps``) and re-decides only the thin shell
``r - eps <= d < r + eps`` with the formula above. A pair inside by the formula is within
``r + eps`` for every backend, so it is a candidate; a pair outside is never surely inside;
so every backend returns exactly the pairs of the formula.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from equigraph.graph.cell import plane_spacings
from equigraph.graph.coincidence import CoincidentEdge

#: ``eps = MARGIN_ULPS * finfo(pos.dtype).eps * scale``, ``scale`` the sum of the largest
#: coordinate given, the largest wrapped coordinate, the image vectors within the cutoff
#: and the cutoff. Forming a pair vector from wrapped positions and an image vector, and
#: its squared norm, takes fewer than 10 roundings of numbers no larger than ``scale``,
#: each within half an ulp (the float64 formula adds its own, far smaller): 32 leaves a
#: factor > 3 in hand (measured errors stay below 2% of ``eps``), and costs nothing
#: measurable: the shell it widens holds 0.5% of the pairs of float32 bulk at 100 Å.
MARGIN_ULPS = 32


def reference_sq_dist(pos64: Tensor, centre: Tensor, neighbour: Tensor, shift: Optional[Tensor] = None,
                      basis: Optional[Tensor] = None, batch: Optional[Tensor] = None) -> Tensor:
    """Squared length of ``pos[j] - pos[i] + shift @ cell`` for edges ``(i = centre, j =
    neighbour)``, by the formula of the module docstring, in float64.

    Args:
        pos64 (Tensor): ``[N, 3]`` float64 positions.
        centre, neighbour (Tensor): ``[E]`` node indices.
        shift (Tensor, optional): ``[E, 3]`` float64 integer-valued shifts (``None``: open).
        basis (Tensor, optional): ``[G, 3, 3]`` float64 cells, rows the lattice vectors
            (rows along non-periodic directions meet zero shifts only).
        batch (Tensor, optional): ``[N]`` graph of each node (``None``: ``G = 1``).
    """
    v = pos64.index_select(0, neighbour) - pos64.index_select(0, centre)
    if shift is not None:
        if basis.size(0) == 1:
            b = basis[0]
            image = (shift[:, 0:1] * b[0] + shift[:, 1:2] * b[1]) + shift[:, 2:3] * b[2]
        else:
            b = basis.index_select(0, batch.index_select(0, centre))
            image = (shift[:, 0:1] * b[:, 0] + shift[:, 1:2] * b[:, 1]) + shift[:, 2:3] * b[:, 2]
        v = v + image
    return (v[:, 0] * v[:, 0] + v[:, 1] * v[:, 1]) + v[:, 2] * v[:, 2]


class CutoffRule:
    r"""The cutoff and coincidence decision of one search (see the module docstring).

    Args:
        pos (Tensor): ``[N, 3]`` positions as given, in the backends' node order (sorted by
            graph); their dtype sets the rounding the margin covers.
        r (float): cutoff (strict ``<``).
        min_distance (float, optional): coincidence tolerance, ``0`` for none.
            (default: ``0.0``)
        batch (Tensor, optional): ``[N]`` graph of each node. (default: :obj:`None`, one
            graph)
        basis (Tensor, optional): ``[G, 3, 3]`` float64 full-rank bases (the cell along
            periodic directions) for a periodic search. (default: :obj:`None`, open)
        pbc (Tensor, optional): ``[G, 3]`` periodicity, with ``basis``.
        offset (Tensor, optional): ``[N, 3]`` float64 whole cells by which the backends'
            positions were wrapped: a backend shift ``s`` is ``s + offset[i] -
            offset[j]`` for the positions given. (default: :obj:`None`, zeros)
        posw (Tensor, optional): the wrapped positions the backends see. (default:
            ``pos``)

    Attributes:
        eps (float): bound on the difference between any backend's distance and the
            float64 formula, Å.
        search_r (float): ``r + eps``, the cutoff backends gather candidates with.
        hi2 (float): ``search_r ** 2``: a candidate whose own squared distance is not
            below it can never be an edge.

    >>> rule = CutoffRule(torch.tensor([[350.0, 0, 0], [353.0, 4, 0]]), 5.0)
    >>> rule.decide(torch.tensor([0]), torch.tensor([1]), None, torch.tensor([25.0])).tolist()
    [False]
    """

    def __init__(self, pos: Tensor, r: float, min_distance: float = 0.0, *, batch: Optional[Tensor] = None,
                 basis: Optional[Tensor] = None, pbc: Optional[Tensor] = None, offset: Optional[Tensor] = None,
                 posw: Optional[Tensor] = None):
        self.r = float(r)
        self.periodic = basis is not None
        self.pos64 = pos.detach().double()
        self.batch = batch
        self.basis = basis.double() if basis is not None else None
        self.offset = offset
        scale = self.r
        if pos.numel():
            scale += float(pos.detach().abs().max())
            scale += float((posw if posw is not None else pos).detach().abs().max())
        if self.periodic:
            # shifts of the pairs within reach of the cutoff, between wrapped positions,
            # are at most ceil(r / spacing) + 1 cells; +2 also covers r + eps
            cells = torch.ceil(self.r / plane_spacings(self.basis)) + 2
            extent = (cells * self.basis.abs().amax(dim=-1) * pbc).sum(dim=1)
            scale += float(extent.detach().max()) if extent.numel() else 0.0
        self.eps = MARGIN_ULPS * torch.finfo(pos.dtype).eps * scale
        self.search_r = self.r + self.eps
        self.r2 = self.r * self.r
        self.lo2 = max(self.r - self.eps, 0.0) ** 2
        self.hi2 = self.search_r ** 2
        self.min2 = float(min_distance) ** 2
        self.near2 = (float(min_distance) + self.eps) ** 2 if min_distance > 0 else 0.0

    def sq_dist(self, centre: Tensor, neighbour: Tensor, shift: Optional[Tensor]) -> Tensor:
        """The float64 formula for candidates in backend terms (``shift`` between wrapped
        positions, any integer or float dtype)."""
        if not self.periodic:
            return reference_sq_dist(self.pos64, centre, neighbour)
        s = shift.to(torch.float64)
        if self.offset is not None:
            s = s + (self.offset.index_select(0, centre) - self.offset.index_select(0, neighbour))
        return reference_sq_dist(self.pos64, centre, neighbour, s, self.basis, self.batch)

    def decide(self, centre: Tensor, neighbour: Tensor, shift: Optional[Tensor], dist2: Tensor,
               base: int = 0, squared: bool = True) -> Tensor:
        """Which candidates are edges: a bool mask over them.

        Args:
            centre, neighbour (Tensor): ``[E]`` node indices, ``base`` added to both (a
                per-graph backend passes local indices and the graph's first node).
            shift (Tensor, optional): ``[E, 3]`` shifts between wrapped positions.
            dist2 (Tensor): ``[E]`` the backend's own squared distances.
            base (int, optional): index offset. (default: ``0``)
            squared (bool, optional): ``False`` if ``dist2`` holds plain distances (vesin's
                output, spared a pass squaring it). (default: ``True``)

        Raises:
            CoincidentEdge: for the first edge, in candidate order, between distinct nodes
                (or a node and an image) closer than ``min_distance`` by the formula.
        """
        lo, near_at = (self.lo2, self.near2) if squared else (math.sqrt(self.lo2), math.sqrt(self.near2))
        keep = dist2 < lo
        doubt = (~keep).nonzero().squeeze(1)
        if doubt.numel():
            keep[doubt] = self._sq_dist_at(doubt, centre, neighbour, shift, base) < self.r2
        if self.min2 > 0:
            near = (dist2 < near_at).nonzero().squeeze(1)
            if near.numel():
                d2 = self._sq_dist_at(near, centre, neighbour, shift, base)
                c = centre.index_select(0, near).long()
                j = neighbour.index_select(0, near).long()
                s = None if shift is None else shift.index_select(0, near)
                distinct = c != j
                if s is not None:
                    distinct |= (s != 0).any(dim=1)
                bad = (keep.index_select(0, near) & distinct & (d2 < self.min2)).nonzero()
                if bad.numel():
                    k = int(bad[0, 0])
                    raise CoincidentEdge(int(c[k]) + base, int(j[k]) + base,
                                         None if s is None else [int(x) for x in s[k].tolist()],
                                         math.sqrt(float(d2[k])))
        return keep

    def _sq_dist_at(self, idx: Tensor, centre: Tensor, neighbour: Tensor, shift: Optional[Tensor],
                    base: int) -> Tensor:
        c = centre.index_select(0, idx).long() + base
        j = neighbour.index_select(0, idx).long() + base
        s = None if shift is None else shift.index_select(0, idx)
        return self.sq_dist(c, j, s)
