"""The plain message-passing GNN of the EGNN paper's N-body table, which frame averaging
turns into FA-GNN (Puny et al. 2022, Table 2)."""
from __future__ import annotations

from typing import Callable, Dict, Optional, Union

import torch
from torch import Tensor
from torch.nn import Linear, Sequential
from torch_geometric.nn import MessagePassing
from torch_geometric.nn.resolver import activation_resolver

from equigraph.data import keys as K
from equigraph.graph import FullInteractionGraph, RadiusInteractionGraph

from ._common import declare, int_at_least, read_points

__all__ = ["GNN", "GCL"]


def _act(act):
    return activation_resolver(act) if isinstance(act, str) else act


class GCL(MessagePassing):
    r"""The graph convolution of the EGNN reference code's GNN baseline
    (`vgsatorras/egnn <https://github.com/vgsatorras/egnn>`_, ``models/gcl.py``, recurrent):

    .. math::
        \mathbf{m}_{ij} = \phi_e([\mathbf{h}_i, \mathbf{h}_j, \mathbf{a}_{ij}]), \qquad
        \mathbf{h}_i \leftarrow \mathbf{h}_i + \phi_h\Big(\big[\mathbf{h}_i,
        \textstyle\sum_{j} \mathbf{m}_{ij}\big]\Big)

    Args:
        channels (int): width of the node features and messages.
        edge_dim (int, optional): width of the edge attributes. (default: :obj:`0`)
        act (str or Callable, optional): activation. (default: :obj:`"silu"`)
        **kwargs (optional): of :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:** h :math:`(N, C)`, edge_index :math:`(2, E)`, edge_attr :math:`(E, D)`
        - **output:** :math:`(N, C)`

    Example:
        >>> conv = GCL(8, edge_dim=1)
        >>> conv(torch.randn(3, 8), torch.tensor([[0, 1], [1, 2]]), torch.ones(2, 1)).shape
        torch.Size([3, 8])
    """

    def __init__(self, channels: int, edge_dim: int = 0, act: Union[str, Callable] = "silu", **kwargs):
        kwargs.setdefault("aggr", "sum")
        super().__init__(**kwargs)
        self.channels, self.edge_dim = channels, edge_dim
        self.edge_mlp = Sequential(Linear(2 * channels + edge_dim, channels), _act(act), Linear(channels, channels),
                                   _act(act))
        self.node_mlp = Sequential(Linear(2 * channels, channels), _act(act), Linear(channels, channels))
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        for mlp in (self.edge_mlp, self.node_mlp):
            for layer in mlp:
                if isinstance(layer, Linear):
                    layer.reset_parameters()

    def forward(self, h: Tensor, edge_index: Tensor, edge_attr: Optional[Tensor] = None) -> Tensor:
        agg = self.propagate(edge_index, h=h, edge_attr=edge_attr)
        return h + self.node_mlp(torch.cat([h, agg], dim=-1))

    def message(self, h_i: Tensor, h_j: Tensor, edge_attr: Optional[Tensor]) -> Tensor:
        parts = [h_i, h_j] if edge_attr is None else [h_i, h_j, edge_attr]
        return self.edge_mlp(torch.cat(parts, dim=-1))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.channels}, edge_dim={self.edge_dim})"


def _interaction_graph(spec):
    if spec is None or spec == "full":
        return FullInteractionGraph()
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return RadiusInteractionGraph(float(spec))
    if callable(getattr(spec, "from_data", None)):
        return spec
    raise ValueError(f"GNN: interaction_graph must be None or 'full' (fully connected), a radius cutoff, or an "
                     f"object with from_data(data); got {spec!r}")


class GNN(torch.nn.Module):
    r"""The non-equivariant GNN baseline of the `"E(n) Equivariant Graph Neural Networks"
    <https://arxiv.org/abs/2102.09844>`_ N-body experiment (``GNN(input_dim=6, hidden_nf=64,
    n_layers=4, recurrent=True)`` of the reference code): positions and velocities are
    embedded as plain features, ``num_layers`` :class:`GCL` layers pass messages, and a
    decoder predicts the new positions directly.

    .. math::
        \mathbf{h}^0_i = W[\mathbf{x}_i, \mathbf{v}_i, \mathbf{f}_i], \quad
        \mathbf{h}^{l+1} = \mathrm{GCL}_l(\mathbf{h}^l), \quad
        \hat{\mathbf{x}}_i = \mathrm{MLP}(\mathbf{h}^L_i)

    Wrapped in :class:`equigraph.models.FrameAveraging` it is FA-GNN (Puny et al. 2022):
    the output ``"pos"`` is declared a ``"point"``, so the wrapper rotates and translates it
    back, and ``vel`` is canonicalised with the positions. (The FA authors' own FA-GNN also
    re-frames the hidden features after every layer; this is the one-frame version.)

    Args:
        hidden_channels (int, optional): width. (default: :obj:`64`)
        num_layers (int, optional): number of :class:`GCL` layers. (default: :obj:`4`)
        edge_dim (int, optional): width of ``data.edge_attr`` (the N-body charge products
            ``q_i q_j``); 0 uses none. (default: :obj:`1`)
        in_channels (int, optional): width of ``data.x`` features appended to the input;
            0 reads none. (default: :obj:`0`)
        use_velocity (bool, optional): read ``data.vel``. (default: :obj:`True`)
        act (str or Callable, optional): activation. (default: :obj:`"silu"`)
        interaction_graph (optional): builds the graph when the data has no
            ``edge_index``: :obj:`None` / ``"full"`` (fully connected), a radius cutoff or an
            object with ``from_data(data)``. (default: :obj:`None`)

    Shapes:
        - **input:** ``pos`` :math:`(N, 3)`, ``vel`` :math:`(N, 3)`, optionally ``x``
          :math:`(N, F_{in})`, ``edge_index`` :math:`(2, E)`, ``edge_attr`` :math:`(E, D)`,
          ``batch`` :math:`(N)`
        - **output:** ``{"pos": (N, 3)}``

    Example:
        >>> from torch_geometric.data import Data
        >>> model = GNN(hidden_channels=16, num_layers=2, edge_dim=0)
        >>> model(Data(pos=torch.randn(5, 3), vel=torch.randn(5, 3)))["pos"].shape
        torch.Size([5, 3])
    """

    def __init__(
        self,
        hidden_channels: int = 64,
        num_layers: int = 4,
        edge_dim: int = 1,
        in_channels: int = 0,
        use_velocity: bool = True,
        act: Union[str, Callable] = "silu",
        interaction_graph=None,
    ):
        super().__init__()
        name = type(self).__name__
        self.hidden_channels = int_at_least(hidden_channels, 1, "hidden_channels", name)
        self.num_layers = int_at_least(num_layers, 1, "num_layers", name)
        self.edge_dim = int_at_least(edge_dim, 0, "edge_dim", name)
        self.in_channels = int_at_least(in_channels, 0, "in_channels", name)
        self.use_velocity = bool(use_velocity)
        self.interaction_graph = _interaction_graph(interaction_graph)
        # Submodules initialise themselves on construction; fork_rng keeps those draws off the
        # global generator, so a model built after torch.manual_seed(s) equals one reset after it.
        with torch.random.fork_rng(devices=[]):
            self.embedding = Linear(3 + 3 * self.use_velocity + in_channels, hidden_channels)
            self.layers = torch.nn.ModuleList([GCL(hidden_channels, edge_dim, act) for _ in range(num_layers)])
            self.decoder = Sequential(Linear(hidden_channels, hidden_channels), _act(act), Linear(hidden_channels, 3))
        self.reset_parameters()

    def reset_parameters(self):
        self.embedding.reset_parameters()
        for layer in self.layers:
            layer.reset_parameters()
        for layer in self.decoder:
            if isinstance(layer, Linear):
                layer.reset_parameters()

    @property
    def outputs(self):
        """``{"pos": Output("point", "node")}``."""
        return declare("point", "node", K.POS)

    def forward(self, data) -> Dict[str, Tensor]:
        name = type(self).__name__
        pos, _, x = read_points(data, self.in_channels, name)
        parts = [pos]
        if self.use_velocity:
            vel = getattr(data, K.VEL, None)
            if not isinstance(vel, Tensor) or vel.shape != pos.shape:
                what = list(vel.shape) if isinstance(vel, Tensor) else "missing"
                raise ValueError(f"{name}: data.{K.VEL} must have the shape of data.{K.POS} {list(pos.shape)}, "
                                 f"got {what}")
            parts.append(vel.to(pos.dtype))
        if x is not None:
            parts.append(x)
        edge_index = getattr(data, K.EDGE_INDEX, None)
        if edge_index is None:
            edge_index, _ = self.interaction_graph.from_data(data)
        edge_attr = None
        if self.edge_dim:
            edge_attr = getattr(data, K.EDGE_ATTR, None)
            if edge_attr is None:
                raise ValueError(f"{name}: data.{K.EDGE_ATTR} is missing (built with edge_dim={self.edge_dim})")
            if edge_attr.dim() == 1:
                edge_attr = edge_attr.unsqueeze(-1)
            if edge_attr.shape != (edge_index.size(1), self.edge_dim):
                raise ValueError(f"{name}: data.{K.EDGE_ATTR} must have shape [E={edge_index.size(1)}, "
                                 f"edge_dim={self.edge_dim}], got {list(edge_attr.shape)}")
            edge_attr = edge_attr.to(pos.dtype)
        h = self.embedding(torch.cat(parts, dim=-1))
        for layer in self.layers:
            h = layer(h, edge_index, edge_attr)
        return {K.POS: self.decoder(h)}

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(hidden_channels={self.hidden_channels}, num_layers={self.num_layers}, "
                f"edge_dim={self.edge_dim}, in_channels={self.in_channels}, use_velocity={self.use_velocity})")
