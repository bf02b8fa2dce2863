"""Lattice geometry used by the periodic neighbour searches: a full-rank basis for cells
that are periodic along only some directions, lattice-plane spacings and wrapping."""
from __future__ import annotations

import torch
from torch import Tensor

# A periodic cell whose volume is below this fraction of the product of its (periodic)
# lattice-vector lengths is treated as singular: its lattice planes are too close together
# for any finite image count.
_SINGULAR_TOL = 1e-8


def complete_basis(cell: Tensor, pbc: Tensor) -> Tensor:
    """Return ``[G, 3, 3]`` bases equal to ``cell`` along periodic directions and filled
    with orthonormal vectors perpendicular to the periodic ones along the others.

    Non-periodic directions need no valid lattice vector (a zero row is fine); only the
    periodic rows must be linearly independent. Along a completed direction the fractional
    coordinate is a plain Cartesian length, so one basis serves slabs (``[T, T, F]``), wires
    and molecules (the identity) alike.

    Raises:
        ValueError: if the periodic rows of a cell are singular (zero or dependent).

    >>> b = complete_basis(torch.tensor([[[2.0, 0, 0], [0, 3, 0], [0, 0, 0]]]),
    ...                    torch.tensor([[True, True, False]]))
    >>> b[0, 2].abs().tolist()
    [0.0, 0.0, 1.0]
    """
    work = cell.double() * pbc.unsqueeze(-1)
    num_periodic = pbc.sum(dim=1)
    if bool((num_periodic == 3).all()):
        basis = work
    else:
        # Right singular vectors of the masked cell beyond its rank span the orthogonal
        # complement of the periodic rows; hand them out to the non-periodic rows in order.
        _, _, vh = torch.linalg.svd(work)
        slot = num_periodic.unsqueeze(1) + torch.cumsum((~pbc).long(), dim=1) - 1
        slot = slot.clamp(max=2)
        filler = torch.gather(vh, 1, slot.unsqueeze(-1).expand(-1, -1, 3))
        basis = torch.where(pbc.unsqueeze(-1), work, filler)
    norms = torch.where(pbc, basis.norm(dim=-1), torch.ones_like(basis[..., 0]))
    volume = torch.linalg.det(basis).abs()
    bad = (norms == 0).any(dim=1) | (volume <= _SINGULAR_TOL * norms.prod(dim=1))
    bad &= pbc.any(dim=1)
    if bool(bad.any()):
        g = bad.nonzero().flatten()[:5].tolist()
        raise ValueError(
            f"`cell` is singular along its periodic directions for graph(s) {g}: the periodic "
            "lattice vectors must be non-zero and linearly independent"
        )
    return basis


def plane_spacings(basis: Tensor) -> Tensor:
    """``[G, 3]`` distance between neighbouring lattice planes spanned by the other two
    vectors, ``|det B| / |b_k x b_l|``: a point pair closer than ``r`` differs by less than
    ``r / spacing`` in that fractional coordinate."""
    b0, b1, b2 = basis.unbind(1)
    crosses = torch.stack(
        [torch.linalg.cross(b1, b2), torch.linalg.cross(b2, b0), torch.linalg.cross(b0, b1)], dim=1
    )
    volume = torch.linalg.det(basis).abs().unsqueeze(1)
    return volume / crosses.norm(dim=-1)


def wrap_positions(pos: Tensor, batch: Tensor, basis: Tensor, pbc: Tensor):
    """Wrap positions into the cell along periodic directions.

    Returns ``(pos_wrapped, frac, offset)`` with ``pos_wrapped = pos - offset @ basis[batch]``
    (``offset`` integer-valued, zero along non-periodic directions) and ``frac`` the
    fractional coordinates of ``pos_wrapped``, computed in float64.
    """
    inv = torch.linalg.inv(basis)
    frac = torch.einsum("ni,nij->nj", pos.double(), inv[batch])
    offset = torch.where(pbc[batch], torch.floor(frac), torch.zeros_like(frac))
    frac = frac - offset
    pos_wrapped = pos - torch.einsum("ni,nij->nj", offset, basis[batch]).to(pos.dtype)
    return pos_wrapped, frac, offset
