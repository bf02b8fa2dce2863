"""Equivariant normalization of steerable features."""
from __future__ import annotations

from typing import Optional

import torch
from e3nn import nn as e3nn_nn
from torch import Tensor
from torch_geometric.utils import scatter

from .irreps import as_irreps

__all__ = ["InstanceNorm", "BatchNorm"]

_REDUCES = ("mean", "max")
_NORMALIZATIONS = ("component", "norm")


def _check(eps, reduce, normalization):
    if not (isinstance(eps, (int, float)) and not isinstance(eps, bool) and eps > 0):
        raise ValueError(f"eps must be a number > 0, got {eps!r}")
    if reduce not in _REDUCES:
        raise ValueError(f"reduce must be one of {_REDUCES}, got {reduce!r}")
    if normalization not in _NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {_NORMALIZATIONS}, got {normalization!r}")


class InstanceNorm(torch.nn.Module):
    r"""Graph-wise instance normalization of steerable features, SEGNN's ``InstanceNorm``
    (`Brandstetter et al., 2022 <https://arxiv.org/abs/2110.02905>`_, its QM9 setting):
    for every graph :math:`G` and every irrep copy :math:`u` (of order :math:`l`),

    .. math::
        \mathbf{x}_{iu}' = \gamma_u \, \frac{\mathbf{x}_{iu} - \mu_{Gu}}
            {\sqrt{\operatorname{reduce}_{i \in G} \|\mathbf{x}_{iu} - \mu_{Gu}\|^2 / d + \epsilon}}
            + \beta_u

    where :math:`\mu_{Gu}` is the mean over the graph's nodes for scalars (:math:`l = 0`)
    and 0 otherwise, :math:`d = 2l + 1` (``"component"``) or 1 (``"norm"``), and the bias
    :math:`\beta_u` exists for even scalars only (a bias on anything else would break
    equivariance). Norms of irreps are invariant, so the layer is equivariant. Being per
    graph, it gives a graph the same output alone or in any batch, in training and in
    evaluation (no running statistics), which is why it is the default here;
    :class:`BatchNorm` is the batch-wise alternative (SEGNN's ``norm="batch"``).

    Args:
        irreps (irreps): irreps of the features (``irreps_in == irreps_out``).
        eps (float, optional): added to the variance. (default: :obj:`1e-5`)
        affine (bool, optional): learn :math:`\gamma` (one per irrep copy) and
            :math:`\beta` (one per even scalar). (default: :obj:`True`)
        reduce (str, optional): ``"mean"`` or ``"max"`` over a graph's nodes.
            (default: :obj:`"mean"`)
        normalization (str, optional): ``"component"`` or ``"norm"``. (default: :obj:`"component"`)

    Shapes:
        - **input:** features :math:`(N, \text{irreps.dim})`, batch vector :math:`(N)`
          *(optional, one graph without it)*
        - **output:** :math:`(N, \text{irreps.dim})`

    Example:
        >>> norm = InstanceNorm("4x0e+2x1o")
        >>> x, batch = torch.randn(5, 10), torch.tensor([0, 0, 0, 1, 1])
        >>> out = norm(x, batch)
        >>> out[:3, :4].mean(0).abs().max() < 1e-6  # scalars centred per graph
        tensor(True)
    """

    def __init__(self, irreps, eps: float = 1e-5, affine: bool = True, reduce: str = "mean",
                 normalization: str = "component"):
        super().__init__()
        irreps = as_irreps(irreps, "irreps")
        if irreps.dim == 0:
            raise ValueError("irreps: InstanceNorm needs non-empty irreps")
        _check(eps, reduce, normalization)
        self.irreps_in = self.irreps_out = self.irreps = irreps
        self._dim = irreps.dim  # a plain int for forward() (torch.compile)
        self.eps, self.affine, self.reduce, self.normalization = float(eps), bool(affine), reduce, normalization
        num_scalars = sum(mul for mul, ir in irreps if ir.l == 0 and ir.p == 1)
        if self.affine:
            self.weight = torch.nn.Parameter(torch.empty(irreps.num_irreps))
            self.bias = torch.nn.Parameter(torch.empty(num_scalars))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        # Per output dimension: its irrep copy (for the scale), whether it is a scalar
        # (centred), and its even-scalar index (bias).
        copy_of_dim, centred, bias_dims = [], [], []
        copy = 0
        for mul, ir in irreps:
            for _ in range(mul):
                copy_of_dim += [copy] * ir.dim
                centred += [ir.l == 0] * ir.dim
                copy += 1
        for (mul, ir), s in zip(irreps, irreps.slices()):
            if ir.l == 0 and ir.p == 1:
                bias_dims += list(range(s.start, s.stop))
        copy_dim = [float(ir.dim if normalization == "component" else 1) for mul, ir in irreps for _ in range(mul)]
        self.register_buffer("_copy_of_dim", torch.tensor(copy_of_dim, dtype=torch.long), persistent=False)
        self.register_buffer("_centred", torch.tensor(centred, dtype=torch.bool), persistent=False)
        self.register_buffer("_bias_dims", torch.tensor(bias_dims, dtype=torch.long), persistent=False)
        self.register_buffer("_copy_dim", torch.tensor(copy_dim, dtype=torch.float64), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.affine:
            torch.nn.init.ones_(self.weight)
            torch.nn.init.zeros_(self.bias)

    def forward(self, x: Tensor, batch: Optional[Tensor] = None, num_graphs: Optional[int] = None) -> Tensor:
        if x.dim() != 2 or x.size(-1) != self._dim:
            raise ValueError(f"x must have shape [N, {self._dim}] (irreps {self.irreps}), got {list(x.shape)}")
        if batch is None:
            batch = x.new_zeros(x.size(0), dtype=torch.long)
            num_graphs = 1
        elif batch.shape != (x.size(0),):
            raise ValueError(f"batch must have shape [{x.size(0)}] (one entry per node), got {list(batch.shape)}")
        if num_graphs is None:
            num_graphs = int(batch.max()) + 1 if batch.numel() else 0
        mean = scatter(x, batch, dim=0, dim_size=num_graphs, reduce="mean")
        x = x - torch.where(self._centred, mean, torch.zeros_like(mean))[batch]
        sq = x.square()
        # Per node and irrep copy: squared norm (sum over the copy's components), or its
        # mean over components ("component").
        per_copy = torch.zeros(x.size(0), self._copy_dim.numel(), dtype=x.dtype, device=x.device)
        per_copy = per_copy.index_add(1, self._copy_of_dim, sq)
        per_copy = per_copy / self._copy_dim.to(x.dtype)
        var = scatter(per_copy, batch, dim=0, dim_size=num_graphs, reduce=self.reduce)
        scale = (var + self.eps).rsqrt()
        if self.affine:
            scale = scale * self.weight
        out = x * scale.index_select(1, self._copy_of_dim)[batch]
        if self.affine and self.bias.numel():
            out = out.index_add(1, self._bias_dims, self.bias.expand(x.size(0), -1))
        return out

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.irreps}, eps={self.eps}, affine={self.affine}, "
                f"reduce={self.reduce!r}, normalization={self.normalization!r})")


class BatchNorm(e3nn_nn.BatchNorm):
    r"""Batch normalization of steerable features, :class:`e3nn.nn.BatchNorm` (SEGNN's
    ``norm="batch"``) with validated irreps and ``irreps_in`` / ``irreps_out``: scalars are
    centred and every irrep copy divided by the root mean square of its norm over the batch
    (running averages in evaluation mode). Statistics mix the graphs of a batch; see
    :class:`InstanceNorm` for a per-graph alternative.

    Args:
        irreps (irreps): irreps of the features.
        eps (float, optional): added to the variance. (default: :obj:`1e-5`)
        momentum (float, optional): of the running averages. (default: :obj:`0.1`)
        affine (bool, optional): learn a scale per irrep copy and a bias per even scalar.
            (default: :obj:`True`)
        reduce (str, optional): ``"mean"`` or ``"max"``. (default: :obj:`"mean"`)
        normalization (str, optional): ``"component"`` or ``"norm"``. (default: :obj:`"component"`)

    Shapes:
        - **input:** :math:`(N, \text{irreps.dim})`
        - **output:** :math:`(N, \text{irreps.dim})`

    Example:
        >>> bn = BatchNorm("4x0e+2x1o")
        >>> bn(torch.randn(6, 10)).shape
        torch.Size([6, 10])
    """

    def __init__(self, irreps, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True,
                 reduce: str = "mean", normalization: str = "component"):
        irreps = as_irreps(irreps, "irreps")
        if irreps.dim == 0:
            raise ValueError("irreps: BatchNorm needs non-empty irreps")
        _check(eps, reduce, normalization)
        if not (isinstance(momentum, (int, float)) and 0 <= momentum <= 1):
            raise ValueError(f"momentum must be a number in [0, 1], got {momentum!r}")
        super().__init__(irreps, eps=eps, momentum=momentum, affine=affine, reduce=reduce,
                         normalization=normalization)
        self.irreps_in = self.irreps_out = self.irreps
        self._dim = self.irreps.dim

    def reset_parameters(self) -> None:
        self.running_mean.zero_()
        self.running_var.fill_(1.0)
        if self.affine:
            torch.nn.init.ones_(self.weight)
            torch.nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() < 2 or x.size(-1) != self._dim:
            raise ValueError(f"x must have shape [N, {self._dim}] (irreps {self.irreps}), got {list(x.shape)}")
        return super().forward(x)
