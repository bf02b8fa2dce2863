"""The E(n)-equivariant graph neural network (EGNN) as a whole model on PyG data."""
from __future__ import annotations

from typing import Callable, Dict, Optional, Union

import torch
from torch import Tensor
from torch.nn import Embedding, Linear, ModuleList
from torch.nn.utils import skip_init
from torch_geometric.utils import degree

from equigraph.data import keys as K
from equigraph.graph import FullInteractionGraph, RadiusInteractionGraph
from equigraph.nn.conv import EGNNConv
from equigraph.nn.geometry import check_edge_vec_inputs

from .readout import Readout
from .registry import register_model

__all__ = ["EGNN"]

#: Default cutoff of the radius interaction graph, Å.
DEFAULT_CUTOFF = 5.0


def _resolve_interaction_graph(spec):
    # Plain values keep YAML configs (registry) able to choose the graph.
    if spec is None:
        return RadiusInteractionGraph(DEFAULT_CUTOFF)
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return RadiusInteractionGraph(float(spec))
    if isinstance(spec, str) and spec == "full":
        return FullInteractionGraph()
    if callable(spec) and hasattr(spec, "from_data"):
        return spec
    raise ValueError("interaction_graph must be an interaction-graph object with from_data(data), a radius "
                     f"cutoff in Å, or 'full'; got {spec!r}")


@register_model("egnn")
class EGNN(torch.nn.Module):
    r"""The E(n)-equivariant graph neural network from the `"E(n) Equivariant Graph Neural
    Networks" <https://arxiv.org/abs/2102.09844>`_ paper: an embedding of the nodes,
    ``num_layers`` :class:`~equigraph.nn.conv.EGNNConv` layers updating features, positions
    and (optionally) velocities, and an invariant :class:`~equigraph.models.readout.Readout`.

    .. math::
        \mathbf{h}^0_i = \mathrm{Emb}(z_i) \text{ or } \mathbf{W}\mathbf{x}_i, \qquad
        (\mathbf{h}^{l+1}, \mathbf{x}^{l+1}, \mathbf{v}^{l+1}) =
        \mathrm{EGNNConv}_l(\mathbf{h}^l, \mathbf{x}^l, \mathbf{v}^{l}), \qquad
        \mathbf{y} = \mathrm{Readout}(\mathbf{h}^L)

    As in the reference code, every layer receives the *input* velocities
    :math:`\mathbf{v}^l = \mathbf{v}^0` unless ``propagate_velocity=True`` (then each layer
    gets the velocity returned by the previous one, the paper's Eq. 7 read literally).

    The graph is ``data.edge_index`` (with ``data.shift`` / ``data.cell`` for periodic data)
    when present, else ``interaction_graph.from_data(data)``. A node without neighbours
    (e.g. a graph with one atom) gets zero messages: its output is finite and, without
    velocities, its position is unchanged.

    Configurations of the paper: N-body (EGNN-vel) ``EGNN(in_channels=1, edge_dim=1,
    use_velocity=True, hidden_channels=64, num_layers=4)`` on ``x`` = speed,
    ``edge_attr`` = charge products, reading ``out["pos"]`` (the reference script also
    appends the input squared distance to ``edge_attr``, i.e. ``edge_dim=2``); QM9 ``EGNN(in_channels=15,
    hidden_channels=128, num_layers=7, attention=True, update_coords=False,
    out_channels=1, reduce="sum", graph_mlp=True, interaction_graph="full")``.

    Args:
        hidden_channels (int, optional): Size of node features and messages.
            (default: :obj:`128`)
        num_layers (int, optional): Number of EGNN layers. (default: :obj:`4`)
        out_channels (int, optional): Size of the readout ``"y"``; :obj:`None` builds no
            readout. (default: :obj:`None`)
        in_channels (int, optional): Width of ``data.x``, embedded by a linear map;
            :obj:`None` embeds ``data.z`` instead. (default: :obj:`None`)
        max_z (int, optional): Number of rows of the ``data.z`` embedding.
            (default: :obj:`100`)
        edge_dim (int, optional): Width of ``data.edge_attr`` fed to every layer; with
            :obj:`0` any ``data.edge_attr`` is ignored. (default: :obj:`0`)
        use_velocity (bool, optional): Read ``data.vel`` and use EGNN-vel layers.
            (default: :obj:`False`)
        propagate_velocity (bool, optional): See above. (default: :obj:`False`)
        update_coords (bool, optional): Update positions in the layers. (default: :obj:`True`)
        attention (bool, optional): Gated messages. (default: :obj:`False`)
        normalize (bool, optional): Unit vectors in coordinate updates. (default: :obj:`False`)
        tanh (bool, optional): Bounded coordinate weights. (default: :obj:`False`)
        coords_range (float, optional): Bound with ``tanh``. (default: :obj:`1.0`)
        coords_agg (str, optional): :obj:`"mean"` or :obj:`"sum"`. (default: :obj:`"mean"`)
        residual (bool, optional): Residual node updates. (default: :obj:`True`)
        act (str or Callable, optional): Activation. (default: :obj:`"silu"`)
        reduce (str, optional): Readout pooling, :obj:`"sum"`, :obj:`"mean"` or
            :obj:`None` for node-level ``"y"``. (default: :obj:`"sum"`)
        graph_mlp (bool, optional): MLP after pooling (the paper's QM9 head).
            (default: :obj:`False`)
        interaction_graph (optional): Builds the graph when the data has no
            ``edge_index``: an object with ``from_data(data)`` (e.g.
            :class:`equigraph.graph.RadiusInteractionGraph`), a radius cutoff in Å, or
            :obj:`"full"`. (default: :obj:`RadiusInteractionGraph(5.0)`)

    Shapes:
        - **input:** a :class:`~torch_geometric.data.Data` / ``Batch`` with ``pos``
          :math:`(N, 3)`, ``z`` :math:`(N)` or ``x`` :math:`(N, F_{in})`, optionally
          ``vel`` :math:`(N, 3)`, ``edge_index`` :math:`(2, E)`, ``edge_attr``
          :math:`(E, D)`, ``shift`` :math:`(E, 3)`, ``cell`` :math:`(G, 3, 3)`, ``batch``
          :math:`(N)`
        - **output:** a dict with ``"h"`` :math:`(N, F)`, ``"pos"`` :math:`(N, 3)`,
          ``"vec"`` :math:`(N, 1, 3)` (the total displacement), ``"vel"`` :math:`(N, 3)`
          with ``use_velocity``, ``"y"`` :math:`(G, F_{out})` or :math:`(N, F_{out})` with
          ``out_channels``

    Example:
        >>> import torch
        >>> from torch_geometric.data import Data
        >>> model = EGNN(hidden_channels=16, num_layers=2, out_channels=1)
        >>> data = Data(z=torch.tensor([8, 1, 1]), pos=torch.randn(3, 3),
        ...             edge_index=torch.tensor([[1, 2, 0, 0], [0, 0, 1, 2]]))
        >>> out = model(data)
        >>> out["y"].shape, out["pos"].shape, out["h"].shape
        (torch.Size([1, 1]), torch.Size([3, 3]), torch.Size([3, 16]))
    """

    def __init__(
        self,
        hidden_channels: int = 128,
        num_layers: int = 4,
        out_channels: Optional[int] = None,
        in_channels: Optional[int] = None,
        max_z: int = 100,
        edge_dim: int = 0,
        use_velocity: bool = False,
        propagate_velocity: bool = False,
        update_coords: bool = True,
        attention: bool = False,
        normalize: bool = False,
        tanh: bool = False,
        coords_range: float = 1.0,
        coords_agg: str = "mean",
        residual: bool = True,
        act: Union[str, Callable] = "silu",
        reduce: Optional[str] = "sum",
        graph_mlp: bool = False,
        interaction_graph=None,
    ):
        super().__init__()
        if not isinstance(num_layers, int) or num_layers <= 0:
            raise ValueError(f"num_layers must be a positive int, got {num_layers!r}")
        if in_channels is not None and (not isinstance(in_channels, int) or in_channels <= 0):
            raise ValueError(f"in_channels must be a positive int or None, got {in_channels!r}")
        if in_channels is None and (not isinstance(max_z, int) or max_z <= 0):
            raise ValueError(f"max_z must be a positive int, got {max_z!r}")
        if propagate_velocity and not use_velocity:
            raise ValueError("propagate_velocity=True needs use_velocity=True")
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers
        self.out_channels = out_channels
        self.in_channels = in_channels
        self.max_z = max_z
        self.edge_dim = edge_dim
        self.use_velocity = use_velocity
        self.propagate_velocity = propagate_velocity
        self.update_coords = update_coords
        self.interaction_graph = _resolve_interaction_graph(interaction_graph)

        if in_channels is None:
            self.embedding = skip_init(Embedding, max_z, hidden_channels)
        else:
            self.embedding = skip_init(Linear, in_channels, hidden_channels)
        # Layers and readout initialise themselves on construction; fork_rng keeps those draws off
        # the global generator, so that reset_parameters below makes every draw.
        with torch.random.fork_rng(devices=[]):
            self.convs = ModuleList([
                EGNNConv(hidden_channels, hidden_channels, edge_dim=edge_dim, act=act, residual=residual,
                         attention=attention, update_coords=update_coords, velocity=use_velocity,
                         coords_agg=coords_agg, normalize=normalize, tanh=tanh, coords_range=coords_range)
                for _ in range(num_layers)
            ])
            if out_channels is None:
                self.readout = None
            else:
                self.readout = Readout(hidden_channels, out_channels, reduce=reduce, graph_mlp=graph_mlp, act=act)
        self.reset_parameters()

    def reset_parameters(self):
        # Every submodule is initialised here only (skip_init), so a model built after
        # torch.manual_seed(s) equals one reset after torch.manual_seed(s).
        self.embedding.reset_parameters()
        for conv in self.convs:
            conv.reset_parameters()
        if self.readout is not None:
            self.readout.reset_parameters()

    def _embed(self, data) -> Tensor:
        if self.in_channels is not None:
            x = getattr(data, K.X, None)
            if x is None:
                raise ValueError(f"data.{K.X} is missing: this EGNN was built with in_channels={self.in_channels}")
            if x.dim() == 1:
                x = x.unsqueeze(-1)
            if x.dim() != 2 or x.size(-1) != self.in_channels:
                raise ValueError(f"data.{K.X} must have shape [N, in_channels={self.in_channels}], "
                                 f"got {list(x.shape)}")
            return self.embedding(x.to(self.embedding.weight.dtype))
        z = getattr(data, K.Z, None)
        if z is None:
            raise ValueError(f"data.{K.Z} is missing: build the EGNN with in_channels to embed data.{K.X} instead")
        if z.dim() != 1 or z.dtype not in (torch.long, torch.int32, torch.int64):
            raise ValueError(f"data.{K.Z} must be a 1-D integer tensor, got {z.dtype} of shape {list(z.shape)}")
        if not torch.compiler.is_compiling() and not bool(((z >= 0) & (z < self.max_z)).all()):
            raise ValueError(f"data.{K.Z} must lie in [0, max_z={self.max_z}), got values in "
                             f"[{int(z.min())}, {int(z.max())}]")
        return self.embedding(z)

    def forward(self, data) -> Dict[str, Tensor]:
        pos = getattr(data, K.POS, None)
        if pos is None:
            raise ValueError(f"data.{K.POS} is missing")
        if pos.dim() != 2 or pos.size(-1) != 3:
            raise ValueError(f"data.{K.POS} must have shape [N, 3], got {list(pos.shape)}")
        if pos.size(0) == 0:
            raise ValueError(f"data.{K.POS} is empty: the data has no nodes")
        h = self._embed(data)
        if h.size(0) != pos.size(0):
            raise ValueError(f"node inputs have {h.size(0)} rows but data.{K.POS} has {pos.size(0)}")
        batch = getattr(data, K.BATCH, None)
        cell = getattr(data, K.CELL, None)

        edge_index = getattr(data, K.EDGE_INDEX, None)
        if edge_index is not None:
            shift = getattr(data, K.SHIFT, None)
        else:
            edge_index, shift = self.interaction_graph.from_data(data)
        edge_attr = getattr(data, K.EDGE_ATTR, None) if self.edge_dim > 0 else None
        if self.edge_dim > 0 and edge_attr is None:
            raise ValueError(f"data.{K.EDGE_ATTR} is missing: this EGNN was built with edge_dim={self.edge_dim}")
        if shift is None:
            cell = None  # only periodic edges need the cell
        elif cell is None:
            raise ValueError(f"data.{K.SHIFT} is given without data.{K.CELL}")

        vel = None
        if self.use_velocity:
            vel = getattr(data, K.VEL, None)
            if vel is None:
                raise ValueError(f"data.{K.VEL} is missing: this EGNN was built with use_velocity=True")
        # Inputs are validated here, once per forward; the layers then run unchecked
        # (EGNNConv._forward), without shape checks and device syncs in every layer.
        conv0 = self.convs[0]
        conv0._check_inputs(h, pos, edge_index, vel, edge_attr, shift, check_values=False)
        check_edge_vec_inputs(pos, edge_index, shift, cell, batch)
        if not torch.compiler.is_compiling():
            # One device sync for all value checks; the culprit is looked for only on failure.
            inputs = {K.X: getattr(data, K.X, None) if self.in_channels else None, K.EDGE_ATTR: edge_attr, K.VEL: vel}
            inputs = {key: value for key, value in inputs.items() if value is not None}
            if inputs and not bool(torch.stack([torch.isfinite(v).all() for v in inputs.values()]).all()):
                bad = next(key for key, value in inputs.items() if not bool(torch.isfinite(value).all()))
                raise ValueError(f"data.{bad} contains NaN or inf")
        coords_count = None
        if self.update_coords and conv0.coords_agg == "mean":
            # The neighbour count of the mean coordinate update is the same in every layer.
            coords_count = degree(edge_index[1], pos.size(0), dtype=pos.dtype).clamp_(min=1).unsqueeze(-1)
        vel_in = vel
        pos_in = pos
        for conv in self.convs:
            h, pos, vel_out = conv._forward(h, pos, edge_index, vel=vel, edge_attr=edge_attr, shift=shift, cell=cell,
                                            batch=batch, coords_count=coords_count)
            vel = vel_out if self.propagate_velocity else vel_in
        out = {K.H: h, K.POS: pos, K.VEC: (pos - pos_in).unsqueeze(1)}
        if self.use_velocity:
            out[K.VEL] = vel_out
        if self.readout is not None:
            num_graphs = getattr(data, "num_graphs", None) if batch is not None else 1
            out[K.Y] = self.readout(h, batch, num_graphs)
        return out

    def __repr__(self) -> str:
        node_in = f"in_channels={self.in_channels}" if self.in_channels is not None else f"max_z={self.max_z}"
        return (f"{self.__class__.__name__}(hidden_channels={self.hidden_channels}, num_layers={self.num_layers}, "
                f"out_channels={self.out_channels}, {node_in}, edge_dim={self.edge_dim}, "
                f"use_velocity={self.use_velocity}, update_coords={self.update_coords})")
