"""Gated nonlinearity for steerable features (e3nn's :class:`e3nn.nn.Gate`)."""
from __future__ import annotations

from typing import Callable, Tuple

import torch
from e3nn import nn as e3nn_nn
from e3nn import o3
from torch import Tensor

from .irreps import as_irreps

__all__ = ["Gate", "gate_irreps"]


def gate_irreps(irreps) -> Tuple[o3.Irreps, o3.Irreps, o3.Irreps]:
    """Split the irreps a gate should output into ``(scalars, gates, gated)``: the
    scalars (every ``l = 0`` entry, through an activation), one even gate scalar per
    non-scalar irrep, and the non-scalars (``l > 0``, multiplied by their gate).
    The layer before the gate outputs ``scalars + gates + gated`` (sorted, see
    :attr:`Gate.irreps_in`).

    Example:
        >>> gate_irreps("16x0e+8x1o+4x2e")
        (16x0e, 12x0e, 8x1o+4x2e)
    """
    irreps = as_irreps(irreps, "irreps")
    scalars = o3.Irreps([(mul, ir) for mul, ir in irreps if ir.l == 0])
    gated = o3.Irreps([(mul, ir) for mul, ir in irreps if ir.l > 0])
    gates = o3.Irreps([(gated.num_irreps, (0, 1))]) if gated.num_irreps else o3.Irreps("")
    return scalars, gates, gated


class Gate(torch.nn.Module):
    r"""The gated nonlinearity of `"3D Steerable CNNs" <https://arxiv.org/abs/1807.02547>`_
    (Weiler et al., 2018), as used by SEGNN and NequIP, built with :class:`e3nn.nn.Gate`
    for the irreps it should output:

    .. math::
        \mathrm{Gate}(\mathbf{s}, \mathbf{g}, \mathbf{v}) =
        \phi(\mathbf{s}) \oplus \bigoplus_k \sigma(g_k)\, \mathbf{v}_k

    :math:`\phi` acts on the scalars (``act`` on even, ``odd_act`` on odd ones),
    :math:`\sigma` (``gate_act``) on one extra even scalar :math:`g_k` per non-scalar
    irrep :math:`\mathbf{v}_k`. e3nn rescales every activation to unit second moment
    under a standard normal input (SEGNN's gate does the same). See :func:`gate_irreps`.

    Args:
        irreps_out (irreps): what the gate outputs, scalars first (sorted and simplified,
            e.g. ``"16x0e+8x1o+4x2e"``).
        act (callable, optional): activation of the even scalars. (default: SiLU)
        odd_act (callable, optional): activation of the odd scalars; must be odd.
            (default: :func:`torch.tanh`)
        gate_act (callable, optional): activation of the gates. (default: :func:`torch.sigmoid`)

    Shapes:
        - **input:** :math:`(*, \text{irreps\_in.dim})`
        - **output:** :math:`(*, \text{irreps\_out.dim})`

    Example:
        >>> gate = Gate("16x0e+8x1o")
        >>> gate.irreps_in, gate.irreps_out
        (24x0e+8x1o, 16x0e+8x1o)
        >>> gate(torch.randn(5, gate.irreps_in.dim)).shape
        torch.Size([5, 40])
    """

    def __init__(self, irreps_out, act: Callable = torch.nn.functional.silu, odd_act: Callable = torch.tanh,
                 gate_act: Callable = torch.sigmoid):
        super().__init__()
        irreps_out = as_irreps(irreps_out, "irreps_out")
        if irreps_out.dim == 0:
            raise ValueError("irreps_out: a gate needs at least one irrep, got empty irreps")
        scalars, gates, gated = gate_irreps(irreps_out)
        acts = [act if ir.p == 1 else odd_act for _, ir in scalars]
        try:
            self.gate = e3nn_nn.Gate(scalars, acts, gates, [gate_act] if gates else [], gated)
        except ValueError as err:
            raise ValueError(f"irreps_out {irreps_out}: {err}") from None
        if self.gate.irreps_out != irreps_out.simplify():
            raise ValueError(f"irreps_out must list scalars first, sorted and simplified, so that the gate returns "
                             f"them in that order: got {irreps_out}, the gate returns {self.gate.irreps_out}; use "
                             f"Irreps('{irreps_out}').sort().irreps.simplify()")
        self.irreps_in = self.gate.irreps_in
        self._in_dim = self.irreps_in.dim  # a plain int for forward() (torch.compile)
        self.irreps_out = irreps_out
        self.irreps_scalars, self.irreps_gates, self.irreps_gated = scalars, gates, gated

    def forward(self, x: Tensor) -> Tensor:
        if x.size(-1) != self._in_dim:
            raise ValueError(f"x must have last dimension {self._in_dim} (irreps_in {self.irreps_in}), "
                             f"got shape {list(x.shape)}")
        return self.gate(x)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.irreps_in} -> {self.irreps_out})"
