"""The E(n)-equivariant graph neural network (EGNN) as a whole model on PyG data."""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Union

import torch
from torch import Tensor
from torch.nn import Embedding, Linear, ModuleList
from torch.nn.utils import skip_init
from torch_geometric.utils import degree

from equigraph.data import keys as K
from equigraph.nn.conv import EGNNConv
from equigraph.nn.cutoff import PolynomialCutoff
from equigraph.nn.geometry import check_edge_vec_inputs, edge_vec_unchecked

from . import inputs
from .contract import EquigraphModel, Output, check_supplied_edges, resolve_interaction_graph
from .readout import Readout
from .registry import register_model

__all__ = ["EGNN"]


@register_model("egnn")
class EGNN(EquigraphModel):
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
            :class:`equigraph.graph.RadiusInteractionGraph`), a radius cutoff in Å,
            :obj:`"full"` or a spec such as ``{name: knn, k: 12}``.
            (default: :obj:`RadiusInteractionGraph(5.0)`)
        envelope (bool, optional): With a radius interaction graph, multiply every message
            and coordinate term by the polynomial envelope
            :math:`u(r_{ij})` (:class:`~equigraph.nn.PolynomialCutoff`, :math:`p = 6`) of
            the cutoff, so that outputs and their first and second derivatives are
            continuous when a neighbour crosses the cutoff (needed for forces, relaxations
            and MD). Edges of ``data.edge_index`` longer than the cutoff then count for
            nothing. Ignored for graphs without a cutoff (full, kNN). (default: :obj:`True`)
        atom_ref (bool, optional): Give the readout a per-element reference table
            (``max_z`` rows) that the trainer fits for energies. (default: :obj:`False`)

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

    graph_from_input_positions = True

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
        interaction_graph: Any = None,
        envelope: bool = True,
        atom_ref: bool = False,
    ):
        super().__init__()
        for name, value in (("hidden_channels", hidden_channels), ("num_layers", num_layers)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if out_channels is not None and (not isinstance(out_channels, int) or out_channels <= 0):
            raise ValueError(f"out_channels must be a positive int or None, got {out_channels!r}")
        if in_channels is not None and (not isinstance(in_channels, int) or in_channels <= 0):
            raise ValueError(f"in_channels must be a positive int or None, got {in_channels!r}")
        if in_channels is None and (not isinstance(max_z, int) or max_z <= 0):
            raise ValueError(f"max_z must be a positive int, got {max_z!r}")
        if propagate_velocity and not use_velocity:
            raise ValueError("propagate_velocity=True needs use_velocity=True")
        if atom_ref and (out_channels is None or reduce is None):
            raise ValueError("atom_ref=True needs a graph readout (out_channels and reduce='sum' or 'mean')")
        self.hidden_channels = hidden_channels
        self.num_layers = num_layers
        self.out_channels = out_channels
        self.in_channels = in_channels
        self.max_z = max_z
        self.edge_dim = edge_dim
        self.use_velocity = use_velocity
        self.propagate_velocity = propagate_velocity
        self.update_coords = update_coords
        self.interaction_graph = resolve_interaction_graph(interaction_graph)
        cutoff = self.cutoff
        self.envelope = PolynomialCutoff(cutoff) if envelope and cutoff is not None else None

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
                self.readout = Readout(hidden_channels, out_channels, reduce=reduce, graph_mlp=graph_mlp, act=act,
                                       max_z=max_z if atom_ref else None)
        self.reset_parameters()

    def reset_parameters(self):
        # Every submodule is initialised here only (skip_init), so a model built after
        # torch.manual_seed(s) equals one reset after torch.manual_seed(s).
        self.embedding.reset_parameters()
        for conv in self.convs:
            conv.reset_parameters()
        if self.readout is not None:
            self.readout.reset_parameters()

    @property
    def supplied_edge_limit(self) -> Optional[float]:
        return self.envelope.cutoff if self.envelope is not None else None

    @property
    def outputs(self) -> Dict[str, Output]:
        out = {K.H: Output("scalar", "node"), K.POS: Output("point", "node"), K.VEC: Output("vector", "node")}
        if self.use_velocity:
            out[K.VEL] = Output("vector", "node")
        out.update(self.readout_outputs())
        return out

    def forward(self, data) -> Dict[str, Tensor]:
        pos = inputs.positions(data, self.embedding.weight.dtype)
        n = pos.size(0)
        z = None
        if self.in_channels is not None:
            x = inputs.node_features(data, self.in_channels, n)
            h = self.embedding(x.to(self.embedding.weight.dtype))
        else:
            z = inputs.atomic_numbers(data, self.max_z, n)
            x = None
            h = self.embedding(z)
        if self.readout is not None and self.readout.atom_ref is not None and z is None:
            z = inputs.atomic_numbers(data, self.readout.max_z, n)
        batch = getattr(data, K.BATCH, None)
        edge_index, shift, cell = self.graph(data)
        num_edges = edge_index.size(1) if edge_index.dim() == 2 else -1
        edge_attr = inputs.edge_features(data, self.edge_dim, num_edges) if self.edge_dim > 0 else None
        vel = None
        if self.use_velocity:
            vel = inputs.node_vectors(data, K.VEL, n, "this EGNN was built with use_velocity=True")
        # Inputs are validated here, once per forward; the layers then run with validate=False.
        # Value checks (each a device synchronisation) are skipped under inputs.trusted().
        self.convs[0].check_inputs(h, pos, edge_index, vel, edge_attr, shift)  # vel: finite too
        check_edge_vec_inputs(pos, edge_index, shift, cell, batch)
        inputs.check_finite({K.X: x, K.EDGE_ATTR: edge_attr})

        edge_weight = coords_count = None
        if self.envelope is not None:
            length = edge_vec_unchecked(pos, edge_index, shift, cell, batch).norm(dim=-1, keepdim=True)
            check_supplied_edges(data, length, self.supplied_edge_limit)
            edge_weight = self.envelope(length)
        elif self.update_coords and self.convs[0].coords_agg == "mean":
            # The neighbour count of the mean coordinate update is the same in every layer.
            coords_count = degree(edge_index[1], n, dtype=pos.dtype).clamp_(min=1).unsqueeze(-1)
        vel_in = vel
        pos_in = pos
        vel_out = None
        for conv in self.convs:
            h, pos, vel_out = conv(h, pos, edge_index, vel=vel, edge_attr=edge_attr, shift=shift, cell=cell,
                                   batch=batch, edge_weight=edge_weight, coords_count=coords_count, validate=False)
            vel = vel_out if self.propagate_velocity else vel_in
        out = {K.H: h, K.POS: pos, K.VEC: (pos - pos_in).unsqueeze(1)}
        if self.use_velocity:
            out[K.VEL] = vel_out
        if self.readout is not None:
            num_graphs = getattr(data, "num_graphs", None) if batch is not None else 1
            out.update(self.apply_readout(h, batch, num_graphs, z))
        return out

    def __repr__(self) -> str:
        node_in = f"in_channels={self.in_channels}" if self.in_channels is not None else f"max_z={self.max_z}"
        return (f"{self.__class__.__name__}(hidden_channels={self.hidden_channels}, num_layers={self.num_layers}, "
                f"out_channels={self.out_channels}, {node_in}, edge_dim={self.edge_dim}, "
                f"use_velocity={self.use_velocity}, update_coords={self.update_coords}, "
                f"interaction_graph={self.interaction_graph}, envelope={self.envelope is not None})")
