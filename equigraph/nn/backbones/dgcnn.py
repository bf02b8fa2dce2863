"""DGCNN on PyG batches: PyG's ``EdgeConv`` on k-nearest-neighbour graphs rebuilt in
feature space at every layer."""
from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import Tensor
from torch_geometric.nn import MLP, EdgeConv

from equigraph.nn.frames.knn import knn_edge_index, knn_index

from ._common import PooledBackbone, check_widths, int_at_least, read_points, resolve_output

__all__ = ["DGCNN"]


class DGCNN(PooledBackbone):
    r"""The dynamic graph CNN from the `"Dynamic Graph CNN for Learning on Point Clouds"
    <https://arxiv.org/abs/1801.07829>`_ paper: ``num_layers`` PyG
    :class:`~torch_geometric.nn.conv.EdgeConv` layers, each on the ``k``-nearest-neighbour
    graph of its input (coordinates for the first layer, features after it when
    ``dynamic``), the layer outputs concatenated, lifted and max-pooled per cloud, and a head
    per cloud or per point.

    .. math::
        \mathbf{h}^{l+1}_i = \max_{j \in \mathrm{kNN}(\mathbf{h}^l_i)}
        h_\Theta\left([\mathbf{h}^l_i, \mathbf{h}^l_j - \mathbf{h}^l_i]\right), \quad
        \mathbf{g} = \max_i \mathrm{MLP}([\mathbf{h}^1_i, \dots, \mathbf{h}^L_i])

    Neighbourhoods include the point itself, as in the reference code and PyG's
    ``DynamicEdgeConv``; they come from :func:`equigraph.nn.frames.knn_index` (a dense
    batched search, in any feature dimension), so no ``torch_cluster`` is needed. Not
    invariant: wrap it in :class:`equigraph.models.FrameAveraging`.

    Args:
        out_channels (int, optional): width of ``"y"``. (default: from ``out_type``)
        out_type (str, optional): equivariance type of ``"y"``. (default: :obj:`"scalar"`)
        level (str, optional): ``"graph"`` or ``"node"``. (default: :obj:`"graph"`)
        in_channels (int, optional): width of ``data.x`` features appended to the
            coordinates. (default: :obj:`0`)
        hidden_channels (int, optional): width of every EdgeConv. (default: :obj:`64`)
        global_channels (int, optional): width of the pooled feature. (default: :obj:`256`)
        num_layers (int, optional): number of EdgeConv layers. (default: :obj:`3`)
        k (int, optional): neighbours per point, the point included; every cloud needs at
            least ``k`` points. (default: :obj:`20`)
        dynamic (bool, optional): rebuild the graph in feature space at every layer; else
            every layer uses the coordinate graph. (default: :obj:`True`)
        act (str, optional): activation. (default: :obj:`"leaky_relu"`)
        norm (str, optional): PyG normalisation of the MLPs. (default: :obj:`None`)

    Shapes:
        - **input:** ``pos`` :math:`(N, 3)`, optionally ``x`` :math:`(N, F_{in})`,
          ``batch`` :math:`(N)`
        - **output:** ``{"y": (G, C)}`` or ``{"y": (N, C)}``

    Example:
        >>> from torch_geometric.data import Data
        >>> model = DGCNN(out_channels=4, hidden_channels=8, global_channels=16, num_layers=2, k=4)
        >>> model(Data(pos=torch.randn(10, 3)))["y"].shape
        torch.Size([1, 4])
    """

    def __init__(
        self,
        out_channels: Optional[int] = None,
        out_type: str = "scalar",
        level: str = "graph",
        in_channels: int = 0,
        hidden_channels: int = 64,
        global_channels: int = 256,
        num_layers: int = 3,
        k: int = 20,
        dynamic: bool = True,
        act: str = "leaky_relu",
        norm: Optional[str] = None,
    ):
        super().__init__()
        name = type(self).__name__
        self.out_type, self.level, self.out_channels = resolve_output(out_type, level, out_channels, name)
        self.in_channels, self.hidden_channels, self.global_channels, self.num_layers = check_widths(
            in_channels, hidden_channels, global_channels, num_layers, name)
        self.k = int_at_least(k, 1, "k", name)
        self.dynamic = bool(dynamic)
        # Submodules initialise themselves on construction; fork_rng keeps those draws off the
        # global generator, so a model built after torch.manual_seed(s) equals one reset after it.
        with torch.random.fork_rng(devices=[]):
            widths = [3 + in_channels] + [hidden_channels] * num_layers
            self.convs = torch.nn.ModuleList([
                EdgeConv(MLP([2 * c_in, hidden_channels, hidden_channels], act=act, norm=norm, plain_last=False),
                         aggr="max")
                for c_in in widths[:-1]
            ])
            self.build_readout(num_layers * hidden_channels, act, norm)
        self.reset_parameters()

    def encoders(self):
        return self.convs

    def forward(self, data) -> Dict[str, Tensor]:
        pos, batch, x = read_points(data, self.in_channels, type(self).__name__)
        h = pos if x is None else torch.cat([pos, x], dim=-1)
        edge_index = knn_edge_index(knn_index(pos, self.k, batch))
        features = []
        for i, conv in enumerate(self.convs):
            if i > 0 and self.dynamic:
                edge_index = knn_edge_index(knn_index(h, self.k, batch))
            h = conv(h, edge_index)
            features.append(h)
        return self.predict(torch.cat(features, dim=-1), batch, data)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(out_type={self.out_type!s}, level={self.level}, "
                f"out_channels={self.out_channels}, hidden_channels={self.hidden_channels}, "
                f"num_layers={self.num_layers}, k={self.k}, dynamic={self.dynamic})")
