"""Equivariance types and group elements: what a value is (scalar, vector, point, cell,
e3nn irreps, ...) and how it moves under a rotation, a reflection, a translation or a lattice
translation. Used at run time (frame averaging maps outputs back with :func:`transform`) and
by the test kit (:mod:`equigraph.testing`).

Under ``g = (R, t)`` with ``R`` in O(3):

============== =========================================
type           transformation
============== =========================================
"scalar"       unchanged
"pseudoscalar" ``det(R) * s``
"vector"       ``v @ R.T`` (last dimension of size 3, Cartesian x, y, z)
"pseudovector" ``det(R) * v @ R.T``
"point"        ``p @ R.T + t``
"cell"         ``cell @ R.T`` (lattice vectors as rows)
"tensor"       ``R @ T @ R.T`` on the last two dimensions (rank-2 Cartesian tensors:
               stress, polarisability)
Irreps         ``x @ D(R).T`` with ``D = Irreps.D_from_matrix(R)`` on the last dimension
               (e3nn >= 0.6 orders ``1o`` components x, y, z, so ``"1o"`` == ``"vector"``)
============== =========================================

A lattice translation moves one atom by a lattice vector, ``pos[a] += n @ cell``, and
leaves every periodic quantity unchanged (:func:`lattice_translate`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import torch
from torch import Tensor

from e3nn import o3

__all__ = [
    "TYPES",
    "GROUPS",
    "TypeSpec",
    "parse_type",
    "transform",
    "wigner_D",
    "random_rotation",
    "random_o3",
    "lattice_translate",
    "as_generator",
    "LEVELS",
    "Output",
]

#: Named equivariance types (besides ``e3nn.o3.Irreps``).
TYPES = ("scalar", "pseudoscalar", "vector", "pseudovector", "point", "cell", "tensor")

#: Groups and the checks each one implies (node permutations are added by ``permutation=``).
GROUPS = {
    "E3": ("rotation", "reflection", "translation"),
    "SE3": ("rotation", "translation"),
    "O3": ("rotation", "reflection"),
    "SO3": ("rotation",),
}

TypeSpec = Union[str, o3.Irreps]


# ---------------------------------------------------------------------------------------
# Random group elements
# ---------------------------------------------------------------------------------------
def as_generator(generator: Union[None, int, torch.Generator]) -> torch.Generator:
    if isinstance(generator, torch.Generator):
        return generator
    if generator is None:
        generator = 0
    if not isinstance(generator, int):
        raise ValueError(f"`generator` must be None, an int seed or a torch.Generator, got {type(generator).__name__}")
    return torch.Generator().manual_seed(generator)


def random_rotation(
    *shape: int,
    generator: Union[None, int, torch.Generator] = None,
    dtype: torch.dtype = torch.float64,
    device: Union[None, str, torch.device] = None,
) -> Tensor:
    """Uniformly (Haar) distributed rotation matrices, ``det = +1``, shape ``[*shape, 3, 3]``.

    Drawn in float64 (from a unit quaternion) and then cast to ``dtype``.

    Args:
        *shape (int): batch shape.
        generator (int or torch.Generator, optional): seed or CPU generator. (default: seed 0)
        dtype (torch.dtype, optional): output dtype. (default: :obj:`torch.float64`)
        device (torch.device, optional): output device. (default: :obj:`None`)

    Example:
        >>> R = random_rotation(generator=1)
        >>> torch.allclose(R @ R.T, torch.eye(3, dtype=R.dtype)), round(float(torch.det(R)), 6)
        (True, 1.0)
    """
    gen = as_generator(generator)
    q = torch.randn(*shape, 4, generator=gen, dtype=torch.float64)
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    R = torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
            2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
            2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(*shape, 3, 3)
    return R.to(dtype=dtype, device=device)


def random_o3(
    *shape: int,
    parity: Optional[bool] = None,
    generator: Union[None, int, torch.Generator] = None,
    dtype: torch.dtype = torch.float64,
    device: Union[None, str, torch.device] = None,
) -> Tensor:
    """Random elements of O(3): a Haar rotation, times ``-1`` (an improper rotation,
    ``det = -1``) when ``parity`` is true, or with probability 1/2 when ``parity`` is None.

    Args:
        *shape (int): batch shape.
        parity (bool, optional): force ``det = -1`` (True) or ``+1`` (False). (default: random)
        generator (int or torch.Generator, optional): seed or CPU generator. (default: seed 0)
        dtype (torch.dtype, optional): output dtype. (default: :obj:`torch.float64`)
        device (torch.device, optional): output device. (default: :obj:`None`)

    Example:
        >>> round(float(torch.det(random_o3(parity=True))), 6)
        -1.0
    """
    gen = as_generator(generator)
    R = random_rotation(*shape, generator=gen)
    if parity is None:
        sign = torch.where(torch.rand(*shape, generator=gen, dtype=torch.float64) < 0.5, -1.0, 1.0)
    else:
        sign = torch.full(shape, -1.0 if parity else 1.0, dtype=torch.float64)
    return (sign[..., None, None] * R).to(dtype=dtype, device=device)


# ---------------------------------------------------------------------------------------
# Types and transformations
# ---------------------------------------------------------------------------------------
def parse_type(type_: Any, name: str = "value") -> TypeSpec:
    """``type_`` as one of :data:`TYPES` or validated ``e3nn.o3.Irreps``; ``ValueError`` naming
    ``name`` otherwise.

    >>> parse_type("vector"), parse_type("2x1o")
    ('vector', 2x1o)
    """
    if isinstance(type_, o3.Irreps):
        return type_
    if isinstance(type_, str):
        if type_ in TYPES:
            return type_
        try:
            return o3.Irreps(type_)
        except (ValueError, AssertionError) as err:
            raise ValueError(
                f"type {type_!r} of {name!r} is neither one of {TYPES} nor valid irreps: {err}"
            ) from None
    raise ValueError(f"type of {name!r} must be one of {TYPES} or e3nn Irreps, got {type_!r}")


def transform(value: Tensor, type_: TypeSpec, R: Tensor, t: Optional[Tensor] = None, name: str = "value") -> Tensor:
    """Apply ``g = (R, t)`` to ``value`` of equivariance type ``type_``.

    Computed in float64 and returned in float64 (cast back yourself); ``t`` only moves
    ``"point"`` values.

    Example:
        >>> R = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # 90 deg about z
        >>> transform(torch.tensor([[1.0, 0.0, 0.0]]), "point", R, torch.tensor([0.0, 0.0, 1.0]))
        tensor([[0., 1., 1.]], dtype=torch.float64)
    """
    type_ = parse_type(type_, name)
    v = value.detach().to(torch.float64)
    R = R.to(dtype=torch.float64, device=v.device)
    det = torch.det(R)
    if type_ == "scalar":
        return v
    if type_ == "pseudoscalar":
        return det * v
    if isinstance(type_, o3.Irreps):
        if v.dim() == 0 or v.size(-1) != type_.dim:
            raise ValueError(
                f"{name!r} is declared as irreps {type_} (dim {type_.dim}) but its last dimension is "
                f"{tuple(v.shape)[-1:] or 'missing'}"
            )
        D = wigner_D(type_, R).to(device=v.device)
        return v @ D.T
    if type_ == "tensor":
        if v.dim() < 2 or v.shape[-2:] != (3, 3):
            raise ValueError(f"{name!r} is declared 'tensor' but its last two dimensions are not 3 x 3: shape {tuple(v.shape)}")
        return R @ v @ R.T
    if v.dim() == 0 or v.size(-1) != 3:
        raise ValueError(f"{name!r} is declared {type_!r} but its last dimension is not 3: shape {tuple(v.shape)}")
    out = v @ R.T
    if type_ == "pseudovector":
        out = det * out
    elif type_ == "point" and t is not None:
        out = out + t.to(dtype=torch.float64, device=v.device)
    return out




def wigner_D(irreps: Union[str, o3.Irreps], R: Tensor) -> Tensor:
    """The representation matrix ``D(R)`` of ``irreps`` in float64, for ``R`` in O(3).

    e3nn builds its Wigner matrices in the default dtype, so under the default float32 its
    ``D_from_matrix`` is accurate to about 1e-7 only; this builds them in float64 whatever
    the default dtype, so float64 models can be checked at float64 tolerance.

    >>> R = random_rotation(generator=0)
    >>> bool(torch.allclose(wigner_D("1o", R), R, atol=1e-12))
    True
    """
    irreps = o3.Irreps(irreps)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return irreps.D_from_matrix(R.detach().to(dtype=torch.float64, device="cpu"))
    finally:
        torch.set_default_dtype(previous)


def lattice_translate(pos: Tensor, cell: Tensor, atom: Union[int, Sequence[int], Tensor],
                      n: Union[Sequence[int], Tensor], batch: Optional[Tensor] = None) -> Tensor:
    """``pos`` with atom(s) ``atom`` moved by the lattice vector ``n @ cell`` of their graph.

    Args:
        pos (Tensor): ``[N, 3]`` positions.
        cell (Tensor): ``[G, 3, 3]`` (or ``[3, 3]``) lattice vectors as rows.
        atom (int or sequence): node index (or indices) to move.
        n (sequence of 3 ints): integer lattice offsets.
        batch (Tensor, optional): ``[N]`` graph of each node. (default: all in graph 0)

    >>> cell = torch.eye(3).unsqueeze(0) * 4.0
    >>> lattice_translate(torch.zeros(2, 3), cell, 1, [1, 0, -1]).tolist()
    [[0.0, 0.0, 0.0], [4.0, 0.0, -4.0]]
    """
    cell = cell.reshape(-1, 3, 3)
    n = torch.as_tensor(n, dtype=pos.dtype, device=pos.device).reshape(3)
    if not bool((n == n.round()).all()):
        raise ValueError(f"n must hold integers (a lattice vector), got {n.tolist()}")
    atoms = torch.as_tensor(atom, dtype=torch.long, device=pos.device).reshape(-1)
    graph = batch[atoms] if batch is not None else torch.zeros_like(atoms)
    out = pos.clone()
    out[atoms] = out[atoms] + n @ cell[graph].to(pos.dtype)
    return out


#: Row layout of an output: one row per graph, per node or per edge of the batch.
LEVELS = ("graph", "node", "edge")


@dataclass(frozen=True)
class Output:
    """Declaration of one model output.

    Args:
        type (str or Irreps): equivariance type, one of :data:`equigraph.symmetry.TYPES`
            or e3nn irreps. (default: :obj:`"scalar"`)
        level (str): ``"graph"``, ``"node"`` or ``"edge"``. (default: :obj:`"graph"`)

    >>> Output("vector", "node")
    Output(type='vector', level='node')
    """

    type: TypeSpec = "scalar"
    level: str = "graph"

    def __post_init__(self):
        object.__setattr__(self, "type", parse_type(self.type, "Output.type"))
        if self.level not in LEVELS:
            raise ValueError(f"Output.level must be one of {LEVELS}, got {self.level!r}")
