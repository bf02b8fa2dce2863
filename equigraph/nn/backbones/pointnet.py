"""PointNet on PyG batches: a shared per-point MLP and a max pool per cloud."""
from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import Tensor
from torch_geometric.nn import MLP

from ._common import PooledBackbone, check_widths, read_points, resolve_output

__all__ = ["PointNet"]


class PointNet(PooledBackbone):
    r"""PointNet from the `"PointNet: Deep Learning on Point Sets for 3D Classification and
    Segmentation" <https://arxiv.org/abs/1612.00593>`_ paper, without its input and
    feature transform nets: a shared MLP on the raw coordinates (and features) of every
    point, a max pool over each cloud, and a head per cloud or, for per-point outputs, on
    every point's features concatenated with its cloud's (the segmentation head).

    .. math::
        \mathbf{h}_i = \mathrm{MLP}_1([\mathbf{x}_i, \mathbf{f}_i]), \quad
        \mathbf{g} = \max_{i \in \text{cloud}} \mathrm{MLP}_2(\mathbf{h}_i), \quad
        \mathbf{y} = \mathrm{MLP}_3(\mathbf{g}) \text{ or }
        \mathbf{y}_i = \mathrm{MLP}_3([\mathbf{h}_i, \mathbf{g}])

    It reads raw coordinates, so it is neither rotation nor translation invariant: wrap it
    in :class:`equigraph.models.FrameAveraging` for that. ``out_type`` *declares* what the
    output is (``"vector"`` for normals), which is what the wrapper makes it.

    Args:
        out_channels (int, optional): width of ``"y"``. (default: from ``out_type``: 3 for
            vectors and points, the dimension of irreps, else 1)
        out_type (str, optional): equivariance type of ``"y"`` (see
            :data:`equigraph.symmetry.TYPES`). (default: :obj:`"scalar"`)
        level (str, optional): ``"graph"`` (one row per cloud) or ``"node"`` (per point).
            (default: :obj:`"graph"`)
        in_channels (int, optional): width of ``data.x`` features appended to the
            coordinates; 0 reads none. (default: :obj:`0`)
        hidden_channels (int, optional): width of the per-point MLP. (default: :obj:`64`)
        global_channels (int, optional): width of the pooled feature. (default: :obj:`256`)
        num_layers (int, optional): layers of the per-point MLP. (default: :obj:`2`)
        act (str, optional): activation. (default: :obj:`"relu"`)
        norm (str, optional): PyG normalisation of the MLPs (e.g. ``"batch_norm"``).
            (default: :obj:`None`)

    Shapes:
        - **input:** ``pos`` :math:`(N, 3)`, optionally ``x`` :math:`(N, F_{in})`,
          ``batch`` :math:`(N)`
        - **output:** ``{"y": (G, C)}`` or ``{"y": (N, C)}``

    Example:
        >>> from torch_geometric.data import Data
        >>> model = PointNet(out_type="vector", level="node", hidden_channels=16, global_channels=32)
        >>> model(Data(pos=torch.randn(10, 3)))["y"].shape
        torch.Size([10, 3])
        >>> model.outputs
        {'y': Output(type='vector', level='node')}
    """

    def __init__(
        self,
        out_channels: Optional[int] = None,
        out_type: str = "scalar",
        level: str = "graph",
        in_channels: int = 0,
        hidden_channels: int = 64,
        global_channels: int = 256,
        num_layers: int = 2,
        act: str = "relu",
        norm: Optional[str] = None,
    ):
        super().__init__()
        name = type(self).__name__
        self.out_type, self.level, self.out_channels = resolve_output(out_type, level, out_channels, name)
        self.in_channels, self.hidden_channels, self.global_channels, self.num_layers = check_widths(
            in_channels, hidden_channels, global_channels, num_layers, name)
        # Submodules initialise themselves on construction; fork_rng keeps those draws off the
        # global generator, so a model built after torch.manual_seed(s) equals one reset after it.
        with torch.random.fork_rng(devices=[]):
            self.local = MLP([3 + in_channels] + [hidden_channels] * num_layers, act=act, norm=norm, plain_last=False)
            self.build_readout(hidden_channels, act, norm)
        self.reset_parameters()

    def forward(self, data) -> Dict[str, Tensor]:
        pos, batch, x = read_points(data, self.in_channels, type(self).__name__)
        return self.predict(self.local(pos if x is None else torch.cat([pos, x], dim=-1)), batch, data)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(out_type={self.out_type!s}, level={self.level}, "
                f"out_channels={self.out_channels}, hidden_channels={self.hidden_channels}, "
                f"global_channels={self.global_channels}, num_layers={self.num_layers})")
