r"""Group elements applied row by row, differentiably: the run-time counterpart of
:func:`equigraph.symmetry.transform` (which transforms by one element, detached, in float64
for the test kit).

A value laid out as ``[M, F, ...]`` (``M`` rows: graphs, nodes or edges; ``F`` frame
elements) is moved by the element ``(rotations[m, f], translations[m])`` of its row and
frame. With :math:`g = (R, \mathbf{t})`, the types of :data:`equigraph.symmetry.TYPES`
transform as

============== ================================ ====================================
type           :math:`g \cdot x`                :math:`g^{-1} \cdot x`
============== ================================ ====================================
"scalar"       ``x``                            ``x``
"pseudoscalar" ``det(R) x``                     ``det(R) x``
"vector"       ``x @ R.T``                      ``x @ R``
"pseudovector" ``det(R) x @ R.T``               ``det(R) x @ R``
"point"        ``x @ R.T + t``                  ``(x - t) @ R``
"cell"         ``x @ R.T`` (rows are vectors)   ``x @ R``
"tensor"       ``R @ x @ R.T`` (last two dims)  ``R.T @ x @ R``
Irreps         ``x @ D(R).T``                   ``x @ D(R)``
============== ================================ ====================================
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor
from e3nn import o3

from equigraph.symmetry import TypeSpec, parse_type

__all__ = ["frame_transform", "check_value_shape", "VECTOR_TYPES"]

#: Types whose last dimension holds Cartesian x, y, z.
VECTOR_TYPES = ("vector", "pseudovector", "point", "cell")


def check_value_shape(value: Tensor, type_: TypeSpec, name: str, what: str = "output") -> None:
    """``ValueError`` (one line, naming ``name``) unless ``value``'s last dimension fits
    ``type_`` (3 for vector-like types, 3 x 3 for cells and tensors, ``irreps.dim`` for
    irreps)."""
    if type_ == "tensor":
        if value.dim() < 3 or value.shape[-2:] != (3, 3):
            raise ValueError(f"{what} {name!r} is declared 'tensor' but has shape {list(value.shape)}; "
                             "a tensor must be [*, 3, 3]")
    elif type_ in VECTOR_TYPES:
        if value.dim() < 2 or value.size(-1) != 3 or (type_ == "cell" and value.size(-2) != 3):
            need = "[*, 3, 3]" if type_ == "cell" else "[*, 3]"
            raise ValueError(f"{what} {name!r} is declared {type_!r} but has shape {list(value.shape)}; "
                             f"a {type_} must be {need}")
    elif isinstance(type_, o3.Irreps):
        if value.dim() < 2 or value.size(-1) != type_.dim:
            raise ValueError(f"{what} {name!r} is declared irreps {type_} (dim {type_.dim}) but has shape "
                             f"{list(value.shape)}")


def _det(rotations: Tensor) -> Tensor:
    # Exactly +-1: frame elements are orthogonal, so only the sign of the determinant matters.
    det = torch.sign(torch.linalg.det(rotations.detach()))
    return torch.where(det == 0, torch.ones_like(det), det)


def _wigner(l: int, rotations: Tensor) -> Tensor:
    # e3nn builds its matrices in the default dtype; build them in float64 so that a float64
    # model keeps float64 accuracy whatever the default dtype.
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        # natural parity (-1)^l: D(R) is then the polynomial representation, D(-1) = (-1)^l
        D = o3.Irrep(l, (-1) ** l).D_from_matrix(rotations.to(torch.float64))
    finally:
        torch.set_default_dtype(previous)
    return D.to(rotations.dtype)


def _rotate(x: Tensor, D: Tensor, inverse: bool) -> Tensor:
    """``x`` ``[M, F, *mid, d]`` times ``D`` ``[M, F, d, d]`` (``x @ D.T``, or ``x @ D``)."""
    M, F, d = x.size(0), x.size(1), x.size(-1)
    flat = x.reshape(M, F, -1, d)
    out = torch.einsum("mfkd,mfde->mfke" if inverse else "mfkd,mfed->mfke", flat, D)
    return out.reshape(x.shape)


def frame_transform(
    value: Tensor,
    type_: TypeSpec,
    rotations: Tensor,
    translations: Optional[Tensor] = None,
    *,
    inverse: bool = False,
    name: str = "value",
) -> Tensor:
    r"""Apply the frame element of each row and frame (``inverse=True``: its inverse) to
    ``value`` of equivariance type ``type_``, differentiably, in the dtype of ``value``.

    Args:
        value (Tensor): ``[M, F, ...]``; vector-like types have a last dimension of 3.
        type_ (str or Irreps): equivariance type (:data:`equigraph.symmetry.TYPES`).
        rotations (Tensor): ``[M, F, 3, 3]`` orthogonal matrices.
        translations (Tensor, optional): ``[M, 3]`` translation of each row, used by
            ``"point"`` values only. (default: :obj:`None`)
        inverse (bool, optional): apply :math:`g^{-1}` (canonicalise) instead of :math:`g`.
            (default: :obj:`False`)
        name (str, optional): the value's name in error messages.

    Example:
        >>> R = torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]]).expand(1, 1, 3, 3)  # 90 deg about z
        >>> x = torch.tensor([[[[1.0, 0, 0]]]])
        >>> frame_transform(x, "point", R, torch.tensor([[0.0, 0, 1]]))
        tensor([[[[0., 1., 1.]]]])
        >>> frame_transform(frame_transform(x, "vector", R), "vector", R, inverse=True)
        tensor([[[[1., 0., 0.]]]])
    """
    type_ = parse_type(type_, name)
    if value.dim() < 2 or rotations.shape[:2] != value.shape[:2]:
        raise ValueError(f"{name!r}: value of shape {list(value.shape)} does not match frames of shape "
                         f"{list(rotations.shape)} (need [M, F, ...] with the frames' M, F)")
    R = rotations.to(value.dtype)
    extra = value.dim() - 2
    if type_ == "scalar":
        return value
    check_value_shape(value, type_, name, "value")
    if type_ == "pseudoscalar":
        return value * _det(R).view(*R.shape[:2], *([1] * extra))
    if isinstance(type_, o3.Irreps):
        det = _det(R)
        blocks, start = [], 0
        for mul, ir in type_:
            d = ir.dim
            block = value[..., start:start + mul * d]
            start += mul * d
            shape = block.shape
            block = block.reshape(*shape[:-1], mul, d)
            if ir.l > 0:
                D = R if ir.l == 1 else _wigner(ir.l, R)
                block = _rotate(block, D, inverse)
            if ir.p != (-1) ** ir.l:
                # e3nn: D(R) = p^k D_l(det(R) R), k = 1 for improper R; relative to the natural
                # parity (-1)^l (used for D above, and R itself for l = 1) that is a factor det(R)
                block = block * det.view(*det.shape, *([1] * (block.dim() - 2)))
            blocks.append(block.reshape(shape))
        return torch.cat(blocks, dim=-1) if blocks else value
    if type_ == "tensor":
        M, F = value.shape[:2]
        T = value.reshape(M, F, -1, 3, 3)
        Rb = R.unsqueeze(2)
        out = Rb.transpose(-1, -2) @ T @ Rb if inverse else Rb @ T @ Rb.transpose(-1, -2)
        return out.reshape(value.shape)
    if type_ == "point" and translations is not None:
        t = translations.to(value.dtype).view(R.size(0), 1, *([1] * (extra - 1)), 3)
        if inverse:
            return _rotate(value - t, R, inverse=True)
        return _rotate(value, R, inverse=False) + t
    out = _rotate(value, R, inverse)
    if type_ == "pseudovector":
        out = out * _det(R).view(*R.shape[:2], *([1] * extra))
    return out
