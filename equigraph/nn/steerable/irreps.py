"""Irreps as validated values, and the hidden-irreps recipes of SEGNN."""
from __future__ import annotations

from typing import Any, Optional, Union

from e3nn import o3

__all__ = ["as_irreps", "BalancedIrreps", "WeightBalancedIrreps", "tensor_product_weight_numel"]

IrrepsLike = Union[str, list, tuple, o3.Irreps]


def as_irreps(value: Any, name: str = "irreps") -> o3.Irreps:
    """``value`` (a string such as ``"16x0e+8x1o"``, a list of ``(mul, ir)`` or an
    :class:`e3nn.o3.Irreps`) as :class:`~e3nn.o3.Irreps`; a ``ValueError`` names ``name``
    and the value otherwise.

    Example:
        >>> as_irreps("2x0e + 1x1o", "irreps_in")
        2x0e+1x1o
        >>> as_irreps("2x1q", "irreps_in")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: irreps_in: '2x1q' is not valid irreps: ...
    """
    if isinstance(value, o3.Irreps):
        return value
    if isinstance(value, bool) or value is None or not isinstance(value, (str, list, tuple, o3.Irrep)):
        raise ValueError(f"{name}: expected irreps (a str such as '8x0e+4x1o', a list or an e3nn Irreps), "
                         f"got {value!r}")
    try:
        irreps = o3.Irreps(value)
    except (ValueError, AssertionError, TypeError, IndexError) as err:
        raise ValueError(f"{name}: {value!r} is not valid irreps: {err}") from None
    return irreps


def _count(name: str, value: Any, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _orders(lmax: int, sh_type: bool) -> list:
    irreps = [o3.Irrep(0, 1)]
    for l in range(1, lmax + 1):
        irreps += [o3.Irrep(l, (-1) ** l)] if sh_type else [o3.Irrep(l, 1), o3.Irrep(l, -1)]
    return irreps


def BalancedIrreps(lmax: int, channels: int, sh_type: bool = True) -> o3.Irreps:
    r"""Split a budget of ``channels`` feature dimensions evenly across the orders
    :math:`l = 0, \dots, L`, as SEGNN's ``BalancedIrreps`` (`Brandstetter et al., 2022
    <https://arxiv.org/abs/2110.02905>`_): every order gets about ``channels / (L + 1)``
    dimensions, i.e. :math:`\lfloor C / ((L + 1)(2l + 1)) \rfloor` copies of the order-:math:`l`
    irrep, and the remainder goes to extra scalars, so the irreps have dimension
    exactly ``channels``.

    Args:
        lmax (int): highest order :math:`L \ge 0`.
        channels (int): total dimension :math:`C`.
        sh_type (bool, optional): one irrep per order with the parity of the spherical
            harmonics, :math:`(-1)^l`; otherwise both parities for every :math:`l > 0`
            (each counted as an order). (default: :obj:`True`)

    Example:
        >>> BalancedIrreps(2, 128)
        46x0e+14x1o+8x2e
        >>> BalancedIrreps(2, 128).dim
        128
    """
    lmax = _count("lmax", lmax, 0)
    channels = _count("channels", channels, 1)
    irreps = _orders(lmax, bool(sh_type))
    copies = [channels // (ir.dim * len(irreps)) for ir in irreps]
    empty = [str(ir) for ir, n in zip(irreps, copies) if n == 0]
    if empty:
        raise ValueError(f"channels={channels} is too small to give every order up to lmax={lmax} a copy "
                         f"(none for {', '.join(empty)}); use at least "
                         f"{len(irreps) * irreps[-1].dim} channels")
    copies[0] += channels - sum(n * ir.dim for n, ir in zip(copies, irreps))
    return o3.Irreps([(n, ir) for n, ir in zip(copies, irreps)])


def tensor_product_weight_numel(irreps_in1: IrrepsLike, irreps_in2: IrrepsLike, irreps_out: IrrepsLike) -> int:
    """Number of weights of the fully connected tensor product ``irreps_in1 x irreps_in2
    -> irreps_out`` (every allowed path, ``uvw``), without building it.

    Example:
        >>> tensor_product_weight_numel("4x0e+4x1o", "0e+1o", "4x0e+4x1o")
        64
    """
    in1 = as_irreps(irreps_in1, "irreps_in1")
    in2 = as_irreps(irreps_in2, "irreps_in2")
    out = as_irreps(irreps_out, "irreps_out")
    return sum(m1 * m2 * m3 for m1, ir1 in in1 for m2, ir2 in in2 for m3, ir3 in out if ir3 in ir1 * ir2)


def WeightBalancedIrreps(
    irreps_in1_scalar: Union[int, IrrepsLike],
    irreps_in2: IrrepsLike,
    sh: bool = True,
    lmax: Optional[int] = None,
) -> o3.Irreps:
    r"""The smallest steerable irreps (up to order ``lmax``) whose tensor product with
    ``irreps_in2`` back to themselves has at least as many weights as a linear layer on
    the scalars ``irreps_in1_scalar``, SEGNN's ``WeightBalancedIrreps``: the hidden irreps
    of its N-body and QM9 models (``--subspace_type=weightbalanced``).

    With :math:`C` scalar channels the budget is :math:`C^2` weights; the candidates are
    :math:`n` copies of every order (``sh=True``: :math:`n \times (0e + 1o + 2e + \dots)`)
    or :func:`BalancedIrreps` of :math:`n` channels (``sh=False``), for growing :math:`n`.

    Args:
        irreps_in1_scalar (int or irreps): the scalar channels, ``C`` or ``"Cx0e"``.
        irreps_in2 (irreps): the attributes of the tensor product (e.g. spherical
            harmonics up to the attribute order).
        sh (bool, optional): equal copies of every order (see above). (default: :obj:`True`)
        lmax (int, optional): highest order. (default: the highest order of ``irreps_in2``)

    Example:
        >>> WeightBalancedIrreps(64, "1x0e+1x1o")  # SEGNN's N-body hidden irreps
        32x0e+32x1o
        >>> WeightBalancedIrreps("128x0e", "0e+1o+2e+3o", lmax=2)  # its QM9 hidden irreps
        36x0e+36x1o+36x2e
    """
    if isinstance(irreps_in1_scalar, int) and not isinstance(irreps_in1_scalar, bool):
        scalars = o3.Irreps([(_count("irreps_in1_scalar", irreps_in1_scalar, 1), (0, 1))])
    else:
        scalars = as_irreps(irreps_in1_scalar, "irreps_in1_scalar")
    if scalars.dim == 0 or scalars.lmax > 0:
        raise ValueError(f"irreps_in1_scalar must be non-empty scalar irreps (or an int), got {scalars}")
    irreps_in2 = as_irreps(irreps_in2, "irreps_in2")
    if irreps_in2.dim == 0:
        raise ValueError("irreps_in2 is empty")
    lmax = irreps_in2.lmax if lmax is None else _count("lmax", lmax, 0)
    budget = tensor_product_weight_numel(scalars, "0e", scalars)

    def candidate(n: int) -> Optional[o3.Irreps]:
        if sh:
            return o3.Irreps([(n, ir) for ir in _orders(lmax, True)])
        try:
            return BalancedIrreps(lmax, n, sh_type=True)
        except ValueError:  # too few channels for every order yet
            return None

    n = 1
    while True:
        irreps = candidate(n)
        if irreps is not None:
            numel = tensor_product_weight_numel(irreps, irreps_in2, irreps)
            if numel >= budget:
                return irreps
            if numel == 0 and n > budget:
                raise ValueError(f"no tensor product {irreps} x {irreps_in2} -> {irreps} has weights; "
                                 "irreps_in2 reaches none of the orders")
        n += 1
