"""Cutoff envelopes: smooth functions that are 1 at short range and reach 0 at the cutoff,
so that atoms entering or leaving the neighbourhood change nothing abruptly."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from equigraph.nn.radial import _positive

__all__ = ["CosineCutoff", "PolynomialCutoff"]


class CosineCutoff(torch.nn.Module):
    r"""Cosine cutoff from `"Atom-centered symmetry functions for constructing
    high-dimensional neural network potentials" <https://doi.org/10.1063/1.3553717>`_
    (Behler), as used by SchNet and PaiNN:

    .. math::
        f(r) = \begin{cases}
            \frac{1}{2}\left(\cos\frac{\pi r}{c} + 1\right) & r < c \\
            0 & r \ge c
        \end{cases}

    Value 1 and zero slope at :math:`r = 0`; value and first derivative 0 at :math:`r = c`
    (the second derivative jumps there; use :class:`PolynomialCutoff` for a smoother one).

    Args:
        cutoff (float): cutoff radius :math:`c` in Å.

    Shapes:
        - **input:** distances :math:`(*)`, :math:`r \ge 0`
        - **output:** :math:`(*)`

    Example:
        >>> CosineCutoff(2.0)(torch.tensor([0.0, 1.0, 2.0, 3.0]))
        tensor([1.0000, 0.5000, 0.0000, 0.0000])
    """

    def __init__(self, cutoff: float):
        super().__init__()
        self.cutoff = _positive("cutoff", cutoff)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """No parameters; kept for the layer contract."""

    def forward(self, r: Tensor) -> Tensor:
        inside = r < self.cutoff
        # Clamp so the cosine branch is never evaluated past the cutoff (its gradient there
        # would leak through `where`).
        value = 0.5 * (torch.cos(math.pi * r.clamp(max=self.cutoff) / self.cutoff) + 1.0)
        return torch.where(inside, value, torch.zeros_like(value))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(cutoff={self.cutoff})"


class PolynomialCutoff(torch.nn.Module):
    r"""Polynomial envelope from `"Directional Message Passing for Molecular Graphs"
    <https://arxiv.org/abs/2003.03123>`_ (DimeNet), in the form used by NequIP and MACE:

    .. math::
        f(d) = 1 - \frac{(p+1)(p+2)}{2} d^p + p(p+2) d^{p+1} - \frac{p(p+1)}{2} d^{p+2},
        \qquad d = r / c,

    for :math:`r < c` and :math:`0` beyond. :math:`f(0) = 1`; at :math:`r = c` the value
    and the first two derivatives are 0.

    Args:
        cutoff (float): cutoff radius :math:`c` in Å.
        p (float, optional): polynomial order, :math:`p \ge 1`. (default: :obj:`6`)

    Shapes:
        - **input:** distances :math:`(*)`, :math:`r \ge 0`
        - **output:** :math:`(*)`

    Example:
        >>> PolynomialCutoff(2.0, p=6)(torch.tensor([0.0, 2.0, 3.0]))
        tensor([1., 0., 0.])
    """

    def __init__(self, cutoff: float, p: float = 6):
        super().__init__()
        self.cutoff = _positive("cutoff", cutoff)
        if not isinstance(p, (int, float)) or isinstance(p, bool) or not math.isfinite(p) or p < 1:
            raise ValueError(f"`p` must be a finite number >= 1, got {p!r}")
        self.p = float(p)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """No parameters; kept for the layer contract."""

    def forward(self, r: Tensor) -> Tensor:
        p = self.p
        d = (r / self.cutoff).clamp(min=0.0, max=1.0)
        dp = d.pow(p)
        value = 1.0 - 0.5 * (p + 1.0) * (p + 2.0) * dp + p * (p + 2.0) * dp * d - 0.5 * p * (p + 1.0) * dp * d * d
        return torch.where(r < self.cutoff, value, torch.zeros_like(value))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(cutoff={self.cutoff}, p={self.p:g})"
