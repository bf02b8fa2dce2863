"""Edge vectors and norms that stay finite (with finite gradients) everywhere.

``edge_vec`` is the only place where equigraph turns positions, edges and periodic
shifts into edge vectors (see ``docs/conventions.md``):

.. math::
    \\mathbf{r}_{ij} = \\mathbf{x}_j - \\mathbf{x}_i + \\mathbf{s}_{ij} \\mathbf{C}_{b(i)}

with ``j = edge_index[0]`` the neighbour, ``i = edge_index[1]`` the centre, ``s_ij`` the
integer cell offsets of the neighbour's image and ``C`` the lattice vectors (rows) of the
centre's graph.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from equigraph.graph.checks import check_pos, values_checked

__all__ = ["edge_vec", "check_edge_vec_inputs", "edge_vec_unchecked", "safe_norm", "safe_normalize", "edge_length_and_unit"]

#: Default length below which a vector counts as zero length (Å).
DEFAULT_EPS = 1e-9


def _check_edge_index(edge_index: Tensor, num_nodes: int) -> None:
    if not isinstance(edge_index, Tensor) or edge_index.dim() != 2 or edge_index.size(0) != 2:
        shape = tuple(edge_index.shape) if isinstance(edge_index, Tensor) else type(edge_index).__name__
        raise ValueError(f"`edge_index` must be a [2, E] tensor, got {shape}")
    if edge_index.dtype not in (torch.long, torch.int32, torch.int64):
        raise ValueError(f"`edge_index` must be an integer tensor, got {edge_index.dtype}")
    if edge_index.numel() > 0 and values_checked():
        lo, hi = int(edge_index.min()), int(edge_index.max())
        if lo < 0 or hi >= num_nodes:
            raise ValueError(
                f"`edge_index` refers to node {lo if lo < 0 else hi}, but `pos` has {num_nodes} nodes"
            )


def _check_cell(cell: Tensor, batch: Optional[Tensor], num_nodes: int) -> None:
    if cell.dim() not in (2, 3) or cell.shape[-2:] != (3, 3) or (cell.dim() == 2 and cell.shape != (3, 3)):
        raise ValueError(f"`cell` must be [3, 3], [1, 3, 3] or [G, 3, 3], got {tuple(cell.shape)}")
    num_cells = 1 if cell.dim() == 2 else cell.size(0)
    checked = values_checked()
    if checked and not bool(torch.isfinite(cell).all()):
        raise ValueError("`cell` contains NaN or inf entries")
    if num_cells == 1:
        return
    if batch is None:
        raise ValueError(f"`cell` holds {num_cells} cells but no `batch` was given to assign them to nodes")
    if batch.shape != (num_nodes,):
        raise ValueError(f"`batch` must have shape [{num_nodes}] (one entry per node), got {tuple(batch.shape)}")
    if checked and batch.numel() > 0 and (int(batch.min()) < 0 or int(batch.max()) >= num_cells):
        raise ValueError(f"`batch` refers to graphs outside the {num_cells} cells of `cell`")


def check_edge_vec_inputs(
    pos: Tensor,
    edge_index: Tensor,
    shift: Optional[Tensor] = None,
    cell: Optional[Tensor] = None,
    batch: Optional[Tensor] = None,
) -> None:
    """Raise the ``ValueError`` that :func:`edge_vec` would raise for these inputs.

    The value checks (finite ``pos`` and ``cell``, ``edge_index`` and ``batch`` in range)
    read tensor data, i.e. synchronise with the device; they are skipped while
    ``torch.compile`` traces, so that they do not break the graph. Models check once per
    forward with this and then call :func:`edge_vec_unchecked` in every layer.
    """
    check_pos(pos)
    _check_edge_index(edge_index, pos.size(0))
    if shift is None:
        return
    if cell is None:
        raise ValueError("`shift` was given without `cell`: shifts are in units of lattice vectors")
    if not isinstance(shift, Tensor) or shift.shape != (edge_index.size(1), 3):
        shape = tuple(shift.shape) if isinstance(shift, Tensor) else type(shift).__name__
        raise ValueError(f"`shift` must have shape [E, 3] = [{edge_index.size(1)}, 3], got {shape}")
    _check_cell(cell, batch, pos.size(0))


def edge_vec_unchecked(
    pos: Tensor,
    edge_index: Tensor,
    shift: Optional[Tensor] = None,
    cell: Optional[Tensor] = None,
    batch: Optional[Tensor] = None,
) -> Tensor:
    """:func:`edge_vec` without any input check, for inputs already validated by
    :func:`check_edge_vec_inputs` (e.g. once per model forward instead of once per layer).
    Invalid inputs give undefined results here."""
    j, i = edge_index[0], edge_index[1]
    vec = pos.index_select(0, j) - pos.index_select(0, i)
    if shift is None:
        return vec
    shift = shift.to(pos.dtype)
    cell = cell.to(pos.dtype)
    if cell.dim() == 3 and cell.size(0) == 1:
        cell = cell[0]
    if cell.dim() == 2:
        return vec + shift @ cell
    return vec + torch.einsum("ek,ekd->ed", shift, cell.index_select(0, batch.index_select(0, i)))


def edge_vec(
    pos: Tensor,
    edge_index: Tensor,
    shift: Optional[Tensor] = None,
    cell: Optional[Tensor] = None,
    batch: Optional[Tensor] = None,
) -> Tensor:
    r"""Edge vectors pointing from the centre ``i = edge_index[1]`` to the neighbour
    ``j = edge_index[0]``:

    .. math::
        \mathbf{r}_{ij} = \mathbf{x}_j - \mathbf{x}_i + \mathbf{s}_{ij} \mathbf{C}_{b(i)}

    Differentiable with respect to ``pos`` and ``cell`` (for forces and stress).

    Args:
        pos (torch.Tensor): node positions ``[N, 3]``.
        edge_index (torch.Tensor): ``[2, E]``, ``edge_index[0]`` the neighbour, ``edge_index[1]``
            the centre.
        shift (torch.Tensor, optional): ``[E, 3]`` integer-valued cell offsets of the neighbour's
            image (cast to the dtype of ``pos``); needs ``cell``. (default: :obj:`None`)
        cell (torch.Tensor, optional): lattice vectors as rows, ``[3, 3]``, ``[1, 3, 3]`` or
            ``[G, 3, 3]`` (one per graph, then ``batch`` is needed). Ignored without ``shift``.
            (default: :obj:`None`)
        batch (torch.Tensor, optional): ``[N]`` graph index of each node, any order.
            (default: :obj:`None`)

    Shapes:
        - **input:** pos :math:`(N, 3)`, edge_index :math:`(2, E)`, shift :math:`(E, 3)`,
          cell :math:`(G, 3, 3)`, batch :math:`(N)`
        - **output:** :math:`(E, 3)`

    Example:
        >>> pos = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
        >>> edge_vec(pos, torch.tensor([[1], [0]]))  # neighbour 1 seen from centre 0
        tensor([[1., 0., 0.]])
        >>> cell = torch.eye(3) * 4.0
        >>> edge_vec(pos, torch.tensor([[1], [0]]), shift=torch.tensor([[-1.0, 0.0, 0.0]]), cell=cell)
        tensor([[-3.,  0.,  0.]])
    """
    check_edge_vec_inputs(pos, edge_index, shift, cell, batch)
    return edge_vec_unchecked(pos, edge_index, shift, cell, batch)


def _nonzero_mask(sq: Tensor, eps: float) -> Tensor:
    return sq > eps * eps


def safe_norm(vec: Tensor, dim: int = -1, keepdim: bool = False, eps: float = DEFAULT_EPS) -> Tensor:
    r"""Euclidean norm :math:`\|\mathbf{v}\|` that is :math:`0` with zero gradient for vectors
    no longer than ``eps``, instead of the NaN gradient of :func:`torch.linalg.norm` at zero.

    Exact (no added epsilon) for every vector longer than ``eps``.

    Args:
        vec (torch.Tensor): vectors along ``dim``.
        dim (int, optional): the vector dimension. (default: :obj:`-1`)
        keepdim (bool, optional): keep ``dim`` with size 1. (default: :obj:`False`)
        eps (float, optional): lengths up to ``eps`` count as zero. (default: :obj:`1e-9`)

    Shapes:
        - **input:** :math:`(*, 3)`
        - **output:** :math:`(*)` (or :math:`(*, 1)` with ``keepdim``)

    Example:
        >>> v = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]], requires_grad=True)
        >>> n = safe_norm(v)
        >>> n
        tensor([5., 0.], grad_fn=<WhereBackward0>)
        >>> n.sum().backward(); v.grad
        tensor([[0.6000, 0.8000, 0.0000],
                [0.0000, 0.0000, 0.0000]])
    """
    sq = vec.square().sum(dim=dim, keepdim=keepdim)
    mask = _nonzero_mask(sq, eps)
    # The inner `where` keeps sqrt's backward away from 0: a NaN there would survive the
    # outer `where` (0 * inf = NaN in the chain rule).
    return torch.where(mask, torch.where(mask, sq, torch.ones_like(sq)).sqrt(), torch.zeros_like(sq))


def safe_normalize(vec: Tensor, dim: int = -1, eps: float = DEFAULT_EPS) -> Tensor:
    r"""Unit vectors :math:`\mathbf{v} / \|\mathbf{v}\|`, with the zero vector (and zero gradient)
    for vectors no longer than ``eps``.

    Args:
        vec (torch.Tensor): vectors along ``dim``.
        dim (int, optional): the vector dimension. (default: :obj:`-1`)
        eps (float, optional): lengths up to ``eps`` count as zero. (default: :obj:`1e-9`)

    Shapes:
        - **input:** :math:`(*, 3)`
        - **output:** :math:`(*, 3)`

    Example:
        >>> safe_normalize(torch.tensor([[0.0, 2.0, 0.0], [0.0, 0.0, 0.0]]))
        tensor([[0., 1., 0.],
                [0., 0., 0.]])
    """
    norm = safe_norm(vec, dim=dim, keepdim=True, eps=eps)
    mask = norm > 0
    return torch.where(mask, vec / torch.where(mask, norm, torch.ones_like(norm)), torch.zeros_like(vec))


def edge_length_and_unit(vec: Tensor, eps: float = DEFAULT_EPS) -> Tuple[Tensor, Tensor]:
    r"""Lengths ``[E]`` and unit vectors ``[E, 3]`` of edge vectors, both safe at zero length
    (see :func:`safe_norm` and :func:`safe_normalize`).

    Example:
        >>> length, unit = edge_length_and_unit(torch.tensor([[0.0, 0.0, 2.0]]))
        >>> length, unit
        (tensor([2.]), tensor([[0., 0., 1.]]))
    """
    length = safe_norm(vec, dim=-1, keepdim=True, eps=eps)
    mask = length > 0
    unit = torch.where(mask, vec / torch.where(mask, length, torch.ones_like(length)), torch.zeros_like(vec))
    return length.squeeze(-1), unit
