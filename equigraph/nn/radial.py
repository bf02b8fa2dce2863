"""Radial bases: expand interatomic distances into smooth features."""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["BesselBasis", "GaussianBasis"]


def _positive(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"`{name}` must be a finite number > 0, got {value!r}")
    return float(value)


def _count(name: str, value: int, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}, got {value!r}")
    return value


class BesselBasis(torch.nn.Module):
    r"""Spherical Bessel radial basis of order zero, from `"Directional Message Passing for
    Molecular Graphs" <https://arxiv.org/abs/2003.03123>`_ (DimeNet), as used by NequIP
    (`"E(3)-equivariant graph neural networks for data-efficient and accurate interatomic
    potentials" <https://arxiv.org/abs/2101.03164>`_):

    .. math::
        e_n(r) = \sqrt{\frac{2}{c}} \, \frac{\sin(w_n r)}{r}, \qquad
        w_n = \frac{n \pi}{c}, \quad n = 1, \dots, N

    evaluated as :math:`\sqrt{2/c}\, w_n \operatorname{sinc}(w_n r / \pi)`, so it is finite
    (:math:`\sqrt{2/c}\, w_n`) with a finite gradient at :math:`r = 0`. Multiply by an
    envelope (:class:`~equigraph.nn.PolynomialCutoff`) to make it vanish at the cutoff.

    Args:
        num_basis (int, optional): number of functions :math:`N`. (default: :obj:`8`)
        cutoff (float, optional): cutoff radius :math:`c` in Å. (default: :obj:`5.0`)
        trainable (bool, optional): learn the frequencies :math:`w_n` (NequIP).
            (default: :obj:`False`)

    Shapes:
        - **input:** distances :math:`(*)`, :math:`r \ge 0`
        - **output:** :math:`(*, N)`

    Example:
        >>> basis = BesselBasis(num_basis=4, cutoff=5.0)
        >>> basis(torch.tensor([0.0, 1.0, 5.0])).shape
        torch.Size([3, 4])
    """

    def __init__(self, num_basis: int = 8, cutoff: float = 5.0, trainable: bool = False):
        super().__init__()
        self.num_basis = _count("num_basis", num_basis)
        self.cutoff = _positive("cutoff", cutoff)
        self.trainable = bool(trainable)
        freq = torch.empty(self.num_basis)
        if self.trainable:
            self.freq = torch.nn.Parameter(freq)
        else:
            self.register_buffer("freq", freq)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.freq.copy_(torch.arange(1, self.num_basis + 1, dtype=self.freq.dtype) * math.pi / self.cutoff)

    def forward(self, r: Tensor) -> Tensor:
        r = r.unsqueeze(-1)
        return math.sqrt(2.0 / self.cutoff) * self.freq * torch.sinc(self.freq * r / math.pi)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(num_basis={self.num_basis}, cutoff={self.cutoff}, "
            f"trainable={self.trainable})"
        )


class GaussianBasis(torch.nn.Module):
    r"""Gaussian radial basis from `"SchNet: A continuous-filter convolutional neural network
    for modeling quantum interactions" <https://arxiv.org/abs/1706.08566>`_:

    .. math::
        e_k(r) = \exp\left(-\frac{(r - \mu_k)^2}{2 \sigma^2}\right), \qquad
        \mu_k = \mathrm{start} + k\, \sigma, \quad
        \sigma = \frac{\mathrm{stop} - \mathrm{start}}{N - 1}

    (PyG's ``GaussianSmearing``), with optionally trainable centres :math:`\mu_k` and
    per-function widths.

    Args:
        start (float, optional): first centre in Å. (default: :obj:`0.0`)
        stop (float, optional): last centre in Å. (default: :obj:`5.0`)
        num_basis (int, optional): number of Gaussians :math:`N \ge 2`. (default: :obj:`50`)
        trainable (bool, optional): learn the centres and widths. (default: :obj:`False`)

    Shapes:
        - **input:** distances :math:`(*)`
        - **output:** :math:`(*, N)`

    Example:
        >>> basis = GaussianBasis(0.0, 5.0, num_basis=6)
        >>> basis(torch.tensor([1.0]))[0, 1]  # centre 1 sits at 1 Å
        tensor(1.)
    """

    def __init__(self, start: float = 0.0, stop: float = 5.0, num_basis: int = 50, trainable: bool = False):
        super().__init__()
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (start, stop)) or stop <= start:
            raise ValueError(f"`stop` must be greater than `start` (both finite), got start={start!r}, stop={stop!r}")
        self.start, self.stop = float(start), float(stop)
        self.num_basis = _count("num_basis", num_basis, minimum=2)
        self.trainable = bool(trainable)
        offset, width = torch.empty(self.num_basis), torch.empty(self.num_basis)
        if self.trainable:
            self.offset, self.width = torch.nn.Parameter(offset), torch.nn.Parameter(width)
        else:
            self.register_buffer("offset", offset)
            self.register_buffer("width", width)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.offset.copy_(torch.linspace(self.start, self.stop, self.num_basis, dtype=self.offset.dtype))
            self.width.fill_((self.stop - self.start) / (self.num_basis - 1))

    def forward(self, r: Tensor) -> Tensor:
        return torch.exp(-0.5 * ((r.unsqueeze(-1) - self.offset) / self.width).square())

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(start={self.start}, stop={self.stop}, "
            f"num_basis={self.num_basis}, trainable={self.trainable})"
        )
