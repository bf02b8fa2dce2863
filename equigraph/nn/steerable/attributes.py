"""Steerable attributes: spherical harmonics of edge vectors and their per-node mean."""
from __future__ import annotations

import functools
from typing import Optional, Tuple

import torch
from e3nn import o3
from torch import Tensor
from torch_geometric.utils import scatter

from ..geometry import DEFAULT_EPS, safe_normalize

__all__ = ["SteerableAttributes", "edge_attributes", "node_attributes", "check_edge_lengths", "NORMALIZATIONS"]

#: Normalizations of :func:`e3nn.o3.spherical_harmonics`.
NORMALIZATIONS = ("component", "integral", "norm")


def _check_normalization(normalization: str) -> str:
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
    return normalization


def _check_lmax(lmax) -> int:
    if not isinstance(lmax, int) or isinstance(lmax, bool) or lmax < 0:
        raise ValueError(f"lmax must be an int >= 0, got {lmax!r}")
    return lmax


@functools.lru_cache(maxsize=None)
def _trivial_float64(lmax: int, normalization: str) -> Tensor:
    # The attribute of a direction-less edge: Y_0 (the only non-zero harmonic of the zero
    # vector), taken from e3nn so that it matches the harmonics of every other edge.
    sh = o3.spherical_harmonics(o3.Irreps.spherical_harmonics(lmax), torch.zeros(1, 3, dtype=torch.float64),
                                normalize=False, normalization=normalization)
    return sh[0]


def _trivial(lmax: int, normalization: str, dtype: torch.dtype, device=None) -> Tensor:
    return _trivial_float64(lmax, normalization).to(dtype=dtype, device=device)


def check_edge_lengths(vec: Tensor, edge_index: Optional[Tensor] = None, eps: float = DEFAULT_EPS) -> None:
    """Raise a ``ValueError`` naming the first edge no longer than ``eps`` (its index and,
    given ``edge_index``, its nodes): such an edge has no direction, so its spherical
    harmonics are undefined. Skipped while ``torch.compile`` traces (it reads data).

    Example:
        >>> vec = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
        >>> check_edge_lengths(vec, torch.tensor([[1, 2], [0, 2]]))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: edge 1 (neighbour j=2 -> centre i=2) has zero length ...
    """
    # Not skipped under inputs.trusted(): the loader's once-per-split check
    # (train.device_loader.check_records) does not look for zero-length edges.
    if torch.compiler.is_compiling() or vec.numel() == 0:
        return
    short = vec.detach().square().sum(dim=-1) <= eps * eps
    if not bool(short.any()):
        return
    bad = short.nonzero().flatten()
    k = int(bad[0])
    where = f"edge {k}"
    if edge_index is not None:
        where += f" (neighbour j={int(edge_index[0, k])} -> centre i={int(edge_index[1, k])})"
    more = f"; {bad.numel()} such edges in all" if bad.numel() > 1 else ""
    raise ValueError(f"{where} has zero length (<= {eps:g} Å): coincident atoms or a self-loop{more}. Its "
                     "direction, hence its spherical harmonics, is undefined; pass allow_zero_length=True "
                     "to give such edges the trivial attribute")


def edge_attributes(
    vec: Tensor,
    lmax: int,
    normalization: str = "component",
    edge_index: Optional[Tensor] = None,
    allow_zero_length: bool = False,
    eps: float = DEFAULT_EPS,
) -> Tensor:
    r"""Spherical harmonics :math:`\mathbf{a}_{ij} = Y(\hat{\mathbf{r}}_{ij})` of the edge
    directions, orders :math:`0 \dots L` (:func:`e3nn.o3.spherical_harmonics` with
    ``normalize=True``), irreps ``Irreps.spherical_harmonics(lmax)``.

    A zero-length edge (:math:`\|\mathbf{r}_{ij}\| \le` ``eps``) raises a ``ValueError``
    naming it, unless ``allow_zero_length`` is set: it then gets the trivial attribute
    :math:`(Y_0, 0, \dots, 0)` (the harmonics of the zero vector) with a zero gradient.

    Args:
        vec (torch.Tensor): edge vectors :math:`\mathbf{r}_{ij}` ``[E, 3]``
            (:func:`equigraph.nn.edge_vec`).
        lmax (int): highest order :math:`L`.
        normalization (str, optional): ``"component"`` (:math:`Y_0 = 1`, every order with
            unit mean square component), ``"integral"`` or ``"norm"``.
            (default: :obj:`"component"`)
        edge_index (torch.Tensor, optional): ``[2, E]``, only to name a bad edge's nodes.
        allow_zero_length (bool, optional): see above. (default: :obj:`False`)
        eps (float, optional): lengths up to ``eps`` count as zero. (default: :obj:`1e-9`)

    Shapes:
        - **input:** :math:`(E, 3)`
        - **output:** :math:`(E, (L + 1)^2)`

    Example:
        >>> edge_attributes(torch.tensor([[0.0, 0.0, 2.0]]), lmax=1)
        tensor([[1.0000, 0.0000, 0.0000, 1.7321]])
    """
    lmax = _check_lmax(lmax)
    _check_normalization(normalization)
    if not isinstance(vec, Tensor) or vec.dim() != 2 or vec.size(-1) != 3:
        raise ValueError(f"vec must be an [E, 3] tensor, got {getattr(vec, 'shape', type(vec).__name__)}")
    if not allow_zero_length:
        check_edge_lengths(vec, edge_index, eps)
    unit = safe_normalize(vec, eps=eps)
    return o3.spherical_harmonics(o3.Irreps.spherical_harmonics(lmax), unit, normalize=False,
                                  normalization=normalization)


def node_attributes(
    edge_attr: Tensor,
    edge_index: Tensor,
    num_nodes: int,
    lmax: Optional[int] = None,
    normalization: str = "component",
) -> Tensor:
    r"""Steerable node attributes: the mean of the attributes of a node's edges,
    :math:`\mathbf{a}_i = \frac{1}{|\mathcal{N}(i)|}\sum_{j \in \mathcal{N}(i)} \mathbf{a}_{ij}`,
    over the edges whose centre ``edge_index[1]`` is :math:`i`. A node without edges gets
    the trivial attribute :math:`(Y_0, 0, \dots, 0)` (:math:`Y_0 = 1` with ``"component"``
    normalization), the :math:`0e` part every other node has too.

    Args:
        edge_attr (torch.Tensor): ``[E, (L + 1)^2]`` from :func:`edge_attributes`.
        edge_index (torch.Tensor): ``[2, E]``.
        num_nodes (int): number of nodes :math:`N`.
        lmax (int, optional): :math:`L`. (default: from the width of ``edge_attr``)
        normalization (str, optional): that of ``edge_attr``. (default: :obj:`"component"`)

    Shapes:
        - **output:** :math:`(N, (L + 1)^2)`

    Example:
        >>> a = edge_attributes(torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]]), lmax=1)
        >>> node_attributes(a, torch.tensor([[1, 2], [0, 0]]), num_nodes=2)  # node 1 has no edges
        tensor([[1., 0., 0., 0.],
                [1., 0., 0., 0.]])
    """
    _check_normalization(normalization)
    width = edge_attr.size(-1) if isinstance(edge_attr, Tensor) and edge_attr.dim() == 2 else None
    if lmax is None:
        lmax = round(width ** 0.5) - 1 if width else -1
    lmax = _check_lmax(lmax)
    if width != (lmax + 1) ** 2:
        raise ValueError(f"edge_attr must have shape [E, {(lmax + 1) ** 2}] (orders 0..{lmax}), got "
                         f"{list(getattr(edge_attr, 'shape', []))}")
    if not isinstance(edge_index, Tensor) or edge_index.dim() != 2 or edge_index.size(0) != 2 \
            or edge_index.size(1) != edge_attr.size(0):
        raise ValueError(f"edge_index must have shape [2, E={edge_attr.size(0)}], got "
                         f"{list(getattr(edge_index, 'shape', []))}")
    if not isinstance(num_nodes, int) or isinstance(num_nodes, bool) or num_nodes < 0:
        raise ValueError(f"num_nodes must be an int >= 0, got {num_nodes!r}")
    centre = edge_index[1]
    total = scatter(edge_attr, centre, dim=0, dim_size=num_nodes, reduce="sum")
    count = scatter(torch.ones_like(edge_attr[:, :1]), centre, dim=0, dim_size=num_nodes, reduce="sum")
    trivial = _trivial(lmax, normalization, edge_attr.dtype, edge_attr.device)
    return total / count.clamp(min=1) + (count == 0).to(edge_attr.dtype) * trivial


class SteerableAttributes(torch.nn.Module):
    r"""SEGNN's steerable attributes (`Brandstetter et al., 2022
    <https://arxiv.org/abs/2110.02905>`_): spherical harmonics of the edge directions and
    their mean over each node's edges (:func:`edge_attributes`, :func:`node_attributes`).

    .. math::
        \mathbf{a}_{ij} = Y\!\left(\frac{\mathbf{r}_{ij}}{\|\mathbf{r}_{ij}\|}\right),
        \qquad
        \mathbf{a}_i = \frac{1}{|\mathcal{N}(i)|} \sum_{j \in \mathcal{N}(i)} \mathbf{a}_{ij}
        \quad (\text{trivial } (Y_0, 0, \dots) \text{ if } \mathcal{N}(i) = \emptyset)

    ``"component"`` normalization is the default, as in SEGNN's QM9 code (its N-body code
    uses ``"integral"``): :math:`Y_0 = 1`, so the :math:`0e` part of every edge and node
    attribute is exactly 1 (the attribute-conditioned tensor products then contain a plain
    linear layer) and the trivial attribute of an isolated node, :math:`(1, 0, \dots)`, is
    the same :math:`0e` value; every order has unit mean square component, the input
    scale e3nn's ``"component"`` tensor products assume.

    Args:
        lmax (int): highest order :math:`L` of the harmonics.
        normalization (str, optional): ``"component"``, ``"integral"`` or ``"norm"``.
            (default: :obj:`"component"`)
        allow_zero_length (bool, optional): give zero-length edges the trivial attribute
            instead of raising a ``ValueError`` naming the edge. (default: :obj:`False`)
        eps (float, optional): lengths up to ``eps`` (Å) count as zero. (default: :obj:`1e-9`)

    Shapes:
        - **input:** edge vectors :math:`(E, 3)` (:func:`equigraph.nn.edge_vec`),
          edge indices :math:`(2, E)`, number of nodes :math:`N`
        - **output:** edge attributes :math:`(E, (L + 1)^2)`, node attributes
          :math:`(N, (L + 1)^2)`, both of irreps :attr:`irreps_out`

    Example:
        >>> attrs = SteerableAttributes(lmax=2)
        >>> attrs.irreps_out
        1x0e+1x1o+1x2e
        >>> pos = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [5.0, 5.0, 5.0]])
        >>> edge_index = torch.tensor([[1, 0], [0, 1]])
        >>> from equigraph.nn import edge_vec
        >>> edge_attr, node_attr = attrs(edge_vec(pos, edge_index), edge_index, num_nodes=3)
        >>> edge_attr.shape, node_attr[2]  # node 2 is isolated
        (torch.Size([2, 9]), tensor([1., 0., 0., 0., 0., 0., 0., 0., 0.]))
    """

    def __init__(self, lmax: int, normalization: str = "component", allow_zero_length: bool = False,
                 eps: float = DEFAULT_EPS):
        super().__init__()
        self.lmax = _check_lmax(lmax)
        self.normalization = _check_normalization(normalization)
        self.allow_zero_length = bool(allow_zero_length)
        if not (isinstance(eps, (int, float)) and eps > 0):
            raise ValueError(f"eps must be a number > 0, got {eps!r}")
        self.eps = float(eps)
        self.irreps_in = o3.Irreps("1x1o")
        self.irreps_out = o3.Irreps.spherical_harmonics(self.lmax)
        self.sh = o3.SphericalHarmonics(self.irreps_out, normalize=False, normalization=normalization)

    def forward(self, vec: Tensor, edge_index: Tensor, num_nodes: int) -> Tuple[Tensor, Tensor]:
        if not isinstance(vec, Tensor) or vec.dim() != 2 or vec.size(-1) != 3:
            raise ValueError(f"vec must be an [E, 3] tensor, got {getattr(vec, 'shape', type(vec).__name__)}")
        if not self.allow_zero_length:
            check_edge_lengths(vec, edge_index, self.eps)
        edge_attr = self.sh(safe_normalize(vec, eps=self.eps))
        node_attr = node_attributes(edge_attr, edge_index, num_nodes, self.lmax, self.normalization)
        return edge_attr, node_attr

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(lmax={self.lmax}, normalization={self.normalization!r}"
                + (", allow_zero_length=True" if self.allow_zero_length else "") + ")")
