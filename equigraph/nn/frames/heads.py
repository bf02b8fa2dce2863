"""Heads for vectors known up to sign (surface normals, principal axes) under frame
averaging.

Averaging a vector ``v`` over the elements of a frame can cancel when different elements
give opposite signs; averaging the sign-free tensor ``v v^T`` cannot. :class:`OuterProduct`
turns a network's per-point vector into ``v v^T`` (declared a node-level ``"tensor"``, so
:class:`~equigraph.models.FrameAveraging` rotates it back as one), and
:class:`PrincipalAxis` reads the averaged tensor's principal axis back as a vector.
"""
from __future__ import annotations

from typing import Dict

import torch
from torch import Tensor

from equigraph.data import keys as K
from equigraph.symmetry import Output

__all__ = ["OuterProduct", "PrincipalAxis"]


class OuterProduct(torch.nn.Module):
    r"""A network's per-point 3-vector :math:`\mathbf{v}` as :math:`\mathbf{v}\mathbf{v}^\top`.

    Args:
        net (torch.nn.Module): returns ``{key: [N, 3]}``.
        key (str, optional): the output to read and write. (default: :obj:`"y"`)

    Shapes:
        - **output:** ``{key: [N, 3, 3]}``, declared ``Output("tensor", "node")``

    >>> head = OuterProduct(lambda data: {"y": data.pos})
    >>> from torch_geometric.data import Data
    >>> head(Data(pos=torch.tensor([[1.0, 2.0, 0.0]])))["y"].shape
    torch.Size([1, 3, 3])
    """

    def __init__(self, net, key: str = K.Y):
        super().__init__()
        self.net, self.key = net, key

    @property
    def outputs(self) -> Dict[str, Output]:
        return {self.key: Output("tensor", "node")}

    def forward(self, data) -> Dict[str, Tensor]:
        v = self.net(data)[self.key]
        if v.dim() != 2 or v.size(-1) != 3:
            raise ValueError(f"OuterProduct: output {self.key!r} must be [N, 3], got {list(v.shape)}")
        return {self.key: v.unsqueeze(-1) * v.unsqueeze(-2)}


class PrincipalAxis(torch.nn.Module):
    r"""The principal axis of a (frame-averaged) symmetric tensor :math:`T` as a vector: a
    column of :math:`(T / \operatorname{tr} T)^{2^s}` (repeated squaring converges to the
    projector on the top eigenvector; the column with the largest diagonal entry is the one
    furthest from zero).

    Differentiable everywhere, unlike an eigendecomposition of a rank-1 :math:`T` (one
    frame element in stochastic training), for which it returns :math:`\mathbf{v}` up to
    sign and length exactly. The output is equivariant up to its sign (the axis is), to
    within the convergence of the squaring, :math:`(\lambda_2/\lambda_1)^{2^s}`.

    Args:
        net (torch.nn.Module): returns ``{key: [N, 3, 3]}``.
        squarings (int, optional): :math:`s`. (default: :obj:`5`)
        eps (float, optional): added to the trace. (default: :obj:`1e-12`)
        key (str, optional): the output to read and write. (default: :obj:`"y"`)

    Shapes:
        - **output:** ``{key: [N, 3]}``, declared ``Output("vector", "node")`` (up to sign)
    """

    def __init__(self, net, squarings: int = 5, eps: float = 1e-12, key: str = K.Y):
        super().__init__()
        if not isinstance(squarings, int) or squarings < 1:
            raise ValueError(f"squarings must be a positive int, got {squarings!r}")
        self.net, self.squarings, self.eps, self.key = net, squarings, eps, key

    @property
    def outputs(self) -> Dict[str, Output]:
        return {self.key: Output("vector", "node")}

    def forward(self, data) -> Dict[str, Tensor]:
        t = self.net(data)[self.key]
        if t.dim() != 3 or t.shape[-2:] != (3, 3):
            raise ValueError(f"PrincipalAxis: output {self.key!r} must be [N, 3, 3], got {list(t.shape)}")
        for _ in range(self.squarings):
            t = t / (t.diagonal(dim1=-2, dim2=-1).sum(-1)[..., None, None] + self.eps)
            t = t @ t
        col = t.diagonal(dim1=-2, dim2=-1).argmax(-1)
        return {self.key: t.gather(-1, col[:, None, None].expand(-1, 3, 1)).squeeze(-1)}
