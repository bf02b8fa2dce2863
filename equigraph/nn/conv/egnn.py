"""The E(n)-equivariant graph convolution of Satorras, Hoogeboom and Welling (2021)."""
from __future__ import annotations

import math
from typing import Callable, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn import Linear, Sequential, Sigmoid
from torch.nn.utils import skip_init
from torch_geometric.nn import MessagePassing
from torch_geometric.nn.resolver import activation_resolver
from torch_geometric.utils import degree, scatter

from ...graph.checks import values_checked
from ..geometry import check_edge_vec_inputs, edge_vec_unchecked

_COORDS_AGGS = ("mean", "sum")


def _linear(in_features: int, out_features: int, bias: bool = True) -> Linear:
    # Initialised by EGNNConv.reset_parameters only, so a layer built after
    # torch.manual_seed(s) equals one reset after torch.manual_seed(s).
    return skip_init(Linear, in_features, out_features, bias=bias)


class EGNNConv(MessagePassing):
    r"""The E(n)-equivariant graph convolutional layer from the `"E(n) Equivariant Graph
    Neural Networks" <https://arxiv.org/abs/2102.09844>`_ paper (Satorras, Hoogeboom,
    Welling, 2021), with the velocity variant (EGNN-vel) and the options of the reference
    code (edge gating, normalised and bounded coordinate updates).

    With :math:`\mathbf{r}_{ij} = \mathbf{x}_j - \mathbf{x}_i + \mathbf{s}_{ij}\mathbf{L}`
    the edge vector of :func:`equigraph.nn.edge_vec` (so that
    :math:`\mathbf{x}_i - \mathbf{x}_j = -\mathbf{r}_{ij}`, periodic images included):

    .. math::
        \mathbf{m}_{ij} &= \phi_e\left(\mathbf{h}_i, \mathbf{h}_j,
            \|\mathbf{r}_{ij}\|^2, \mathbf{a}_{ij}\right)
            \quad\left(\times\, \sigma(\phi_\mathrm{att}(\mathbf{m}_{ij}))
            \text{ if attention}\right)

        \mathbf{v}_i' &= \phi_v(\mathbf{h}_i)\,\mathbf{v}_i
            + C_i \sum_{j \in \mathcal{N}(i)} (-\mathbf{r}_{ij})\,
            \phi_x(\mathbf{m}_{ij})

        \mathbf{x}_i' &= \mathbf{x}_i + \mathbf{v}_i'

        \mathbf{h}_i' &= \mathbf{h}_i + \phi_h\left(\mathbf{h}_i,
            \sum_{j \in \mathcal{N}(i)} \mathbf{m}_{ij}\right)

    where :math:`C_i = 1/|\mathcal{N}(i)|` (``coords_agg="mean"``, the reference code's
    default) or :math:`1` (``"sum"``), the velocity term is present only with
    ``velocity=True`` and the residual :math:`\mathbf{h}_i +` only with ``residual=True``.
    With ``normalize=True`` the vector is divided by :math:`\|\mathbf{r}_{ij}\| +
    \epsilon` (the norm is detached from the autograd graph, as in the reference code);
    with ``tanh=True``, :math:`\phi_x` ends in ``coords_range * tanh``. A node without
    neighbours receives zero messages: its features go through :math:`\phi_h(\mathbf{h}_i,
    \mathbf{0})` and only the velocity term moves it.

    The first linear map of :math:`\phi_e` acts on the concatenation
    :math:`[\mathbf{h}_i, \mathbf{h}_j, \|\mathbf{r}_{ij}\|^2, \mathbf{a}_{ij}]`; its node
    blocks are applied once per node, together with the other linear maps of
    :math:`\mathbf{h}` in one matmul, and then gathered per edge: the same function with
    :math:`|\mathcal{V}|` instead of :math:`|\mathcal{E}|` matrix rows. Parameters keep the
    reference code's layout (``edge_mlp``, ``att_mlp``, ``node_mlp``, ``coord_mlp`` and
    ``vel_mlp`` for its ``coord_mlp_vel``), so its weights load by name.
    :meth:`message` computes :math:`\mathbf{m}_{ij}` and the coordinate term
    :math:`-\mathbf{r}_{ij}\phi_x(\mathbf{m}_{ij})` side by side, so that one sum over
    neighbours (:func:`torch_geometric.utils.scatter`) aggregates both.

    Args:
        in_channels (int): Size of the node features :math:`\mathbf{h}`.
        hidden_channels (int): Size of the messages and hidden layers.
        out_channels (int, optional): Size of the output node features.
            (default: :obj:`in_channels`)
        edge_dim (int, optional): Size of the edge attributes :math:`\mathbf{a}_{ij}`;
            :obj:`0` means the layer takes none. (default: :obj:`0`)
        act (str or Callable, optional): Activation of every MLP. (default: :obj:`"silu"`)
        residual (bool, optional): Add :math:`\mathbf{h}_i` to the node update; needs
            ``out_channels == in_channels``. (default: :obj:`True`)
        attention (bool, optional): Gate each message by a sigmoid of a linear map of
            itself. (default: :obj:`False`)
        update_coords (bool, optional): Update positions (and velocities); if
            :obj:`False` positions are returned unchanged and :math:`\phi_x` is not
            built. (default: :obj:`True`)
        velocity (bool, optional): Take node velocities and add
            :math:`\phi_v(\mathbf{h}_i)\mathbf{v}_i` to the displacement (EGNN-vel).
            (default: :obj:`False`)
        coords_agg (str, optional): :obj:`"mean"` or :obj:`"sum"` over neighbours for
            the coordinate update. (default: :obj:`"mean"`)
        normalize (bool, optional): Use unit edge vectors in the coordinate update.
            (default: :obj:`False`)
        eps (float, optional): Added to the edge length when ``normalize=True``.
            (default: :obj:`1e-8`)
        tanh (bool, optional): Bound :math:`\phi_x` by ``coords_range * tanh``.
            (default: :obj:`False`)
        coords_range (float, optional): Bound of :math:`\phi_x` with ``tanh=True``.
            (default: :obj:`1.0`)
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing` (its aggregation is fixed to
            :obj:`"sum"`, the sum over neighbours of the paper).

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, F_{in})`,
          positions :math:`(|\mathcal{V}|, 3)`,
          edge indices :math:`(2, |\mathcal{E}|)` (``[0]`` neighbour :math:`j`, ``[1]``
          centre :math:`i`),
          velocities :math:`(|\mathcal{V}|, 3)` *(optional)*,
          edge attributes :math:`(|\mathcal{E}|, D)` *(optional)*,
          shifts :math:`(|\mathcal{E}|, 3)`, cells :math:`(G, 3, 3)`,
          batch vector :math:`(|\mathcal{V}|)` *(optional, periodic graphs)*
        - **output:** node features :math:`(|\mathcal{V}|, F_{out})`,
          positions :math:`(|\mathcal{V}|, 3)`,
          velocities :math:`(|\mathcal{V}|, 3)` or :obj:`None` without ``velocity``

    Example:
        >>> import torch
        >>> conv = EGNNConv(8, 16)
        >>> h, pos = torch.randn(4, 8), torch.randn(4, 3)
        >>> edge_index = torch.tensor([[0, 1, 2, 3], [1, 0, 3, 2]])
        >>> h, pos, vel = conv(h, pos, edge_index)
        >>> h.shape, pos.shape, vel is None
        (torch.Size([4, 8]), torch.Size([4, 3]), True)
    """

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        out_channels: Optional[int] = None,
        edge_dim: int = 0,
        act: Union[str, Callable] = "silu",
        residual: bool = True,
        attention: bool = False,
        update_coords: bool = True,
        velocity: bool = False,
        coords_agg: str = "mean",
        normalize: bool = False,
        eps: float = 1e-8,
        tanh: bool = False,
        coords_range: float = 1.0,
        **kwargs,
    ):
        if kwargs.get("aggr", "sum") != "sum":
            raise ValueError(f"aggr: EGNNConv sums messages over neighbours, got {kwargs['aggr']!r}")
        kwargs["aggr"] = "sum"
        if kwargs.get("flow", "source_to_target") != "source_to_target":
            raise ValueError("flow: EGNNConv follows edge_index[0] = neighbour, edge_index[1] = centre "
                             f"('source_to_target'), got {kwargs['flow']!r}")
        super().__init__(**kwargs)
        out_channels = in_channels if out_channels is None else out_channels
        for name, value in (("in_channels", in_channels), ("hidden_channels", hidden_channels),
                            ("out_channels", out_channels)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not isinstance(edge_dim, int) or edge_dim < 0:
            raise ValueError(f"edge_dim must be a non-negative int, got {edge_dim!r}")
        if coords_agg not in _COORDS_AGGS:
            raise ValueError(f"coords_agg must be one of {_COORDS_AGGS}, got {coords_agg!r}")
        if residual and out_channels != in_channels:
            raise ValueError(f"residual=True needs out_channels == in_channels, got {out_channels} != {in_channels}")
        if velocity and not update_coords:
            raise ValueError("velocity=True needs update_coords=True: velocities only act on positions")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps!r}")
        if not (math.isfinite(coords_range) and coords_range > 0):
            raise ValueError(f"coords_range must be a finite positive number, got {coords_range!r}")

        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.out_channels = out_channels
        self.edge_dim = edge_dim
        self.residual = residual
        self.attention = attention
        self.update_coords = update_coords
        self.velocity = velocity
        self.coords_agg = coords_agg
        self.normalize = normalize
        self.eps = eps
        self.tanh = tanh
        self.coords_range = coords_range

        self.act = activation_resolver(act)
        # The reference code's E_GCL / E_GCL_vel layout (edge_mlp, att_mlp, node_mlp,
        # coord_mlp, coord_mlp_vel here vel_mlp), so that weights map one to one; forward
        # uses the Linear weights directly (fused, see the class docstring).
        self.edge_mlp = Sequential(_linear(2 * in_channels + 1 + edge_dim, hidden_channels), self.act,
                                   _linear(hidden_channels, hidden_channels), self.act)
        self.att_mlp = Sequential(_linear(hidden_channels, 1), Sigmoid()) if attention else None
        self.node_mlp = Sequential(_linear(in_channels + hidden_channels, hidden_channels), self.act,
                                   _linear(hidden_channels, out_channels))
        if update_coords:
            self.coord_mlp = Sequential(_linear(hidden_channels, hidden_channels), self.act,
                                        _linear(hidden_channels, 1, bias=False))
        else:
            self.coord_mlp = None
        if velocity:
            self.vel_mlp = Sequential(_linear(in_channels, hidden_channels), self.act, _linear(hidden_channels, 1))
        else:
            self.vel_mlp = None
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        for mlp in (self.edge_mlp, self.att_mlp, self.node_mlp, self.coord_mlp, self.vel_mlp):
            for layer in mlp if mlp is not None else ():
                if isinstance(layer, Linear):
                    layer.reset_parameters()
        if self.coord_mlp is not None:
            # Tiny initial coordinate steps (reference code): training starts close to
            # the identity on positions, which keeps early updates stable.
            torch.nn.init.xavier_uniform_(self.coord_mlp[2].weight, gain=0.001)

    def forward(
        self,
        h: Tensor,
        pos: Tensor,
        edge_index: Tensor,
        vel: Optional[Tensor] = None,
        edge_attr: Optional[Tensor] = None,
        shift: Optional[Tensor] = None,
        cell: Optional[Tensor] = None,
        batch: Optional[Tensor] = None,
        edge_weight: Optional[Tensor] = None,
        coords_count: Optional[Tensor] = None,
        validate: bool = True,
    ) -> tuple[Tensor, Tensor, Optional[Tensor]]:
        r"""Returns the updated ``(h, pos, vel)``; ``vel`` is :obj:`None` without
        ``velocity=True``.

        ``edge_weight`` ``[E, 1]`` multiplies each message and coordinate term (a cutoff
        envelope :math:`u(r_{ij})`, so that the layer is smooth where edges enter or leave);
        with it, the ``"mean"`` coordinate update divides by :math:`1 + \sum_j u(r_{ij})`
        instead of the neighbour count, which would jump. ``coords_count`` ``[N, 1]`` is the
        neighbour count of the ``"mean"`` update when the caller has it (a model computes it
        once for all its layers). ``validate=False`` skips the input checks: a model checks
        its inputs once (:mod:`equigraph.models.inputs`) and runs its layers without a
        device sync each.
        """
        if validate:
            self.check_inputs(h, pos, edge_index, vel, edge_attr, shift, edge_weight)
            check_edge_vec_inputs(pos, edge_index, shift, cell, batch)
        num_nodes = h.size(0)
        vec = edge_vec_unchecked(pos, edge_index, shift, cell, batch)
        sq_dist = vec.square().sum(dim=-1, keepdim=True)
        geo = sq_dist if edge_attr is None else torch.cat([sq_dist, edge_attr], dim=-1)

        # Every Linear block that reads h (phi_e's centre and neighbour blocks, phi_h's h
        # block, phi_v's first layer) runs as one matmul on the nodes; message() gathers
        # the centre and neighbour blocks per edge. The neighbour block has no bias.
        f, hid = self.in_channels, self.hidden_channels
        edge_in, node_in = self.edge_mlp[0], self.node_mlp[0]
        weights = [edge_in.weight[:, :f], edge_in.weight[:, f:2 * f], node_in.weight[:, :f]]
        biases = [edge_in.bias, h.new_zeros(hid), node_in.bias]
        if self.vel_mlp is not None:
            weights.append(self.vel_mlp[0].weight)
            biases.append(self.vel_mlp[0].bias)
        parts = torch.addmm(torch.cat(biases), h, torch.cat(weights).t()).split(hid, dim=-1)
        # One scatter sums the messages and, with update_coords, the coordinate terms
        # (message() returns them side by side).
        agg = self.propagate(edge_index, centre=parts[0], neighbour=parts[1], geo=geo, vec=vec,
                             edge_weight=edge_weight, size=(num_nodes, num_nodes))
        msg_sum = agg[:, :hid]

        if self.coord_mlp is not None:
            # x_i - x_j = -vec: negated after aggregating, on N rows instead of E.
            delta = -agg[:, hid:]
            if self.coords_agg == "mean":
                if edge_weight is not None:
                    count = 1.0 + scatter(edge_weight, edge_index[1], dim=0, dim_size=num_nodes, reduce="sum")
                elif coords_count is not None:
                    count = coords_count
                else:
                    count = degree(edge_index[1], num_nodes, dtype=delta.dtype).clamp_(min=1).unsqueeze(-1)
                delta = delta / count
            if self.vel_mlp is not None:
                delta = delta + self.vel_mlp[2](self.act(parts[3])) * vel
                vel = delta
            pos = pos + delta

        out = torch.addmm(parts[2], msg_sum, node_in.weight[:, f:].t())
        out = self.node_mlp[2](self.act(out))
        if self.residual:
            out = h + out
        return out, pos, vel

    def message(self, centre_i: Tensor, neighbour_j: Tensor, geo: Tensor, vec: Tensor,
                edge_weight: Optional[Tensor]) -> Tensor:
        # phi_e on [h_i, h_j, |r_ij|^2, a_ij]: the node blocks were applied per node, the
        # geometric columns are applied here. (1 + D, hidden) contiguous: a matmul with so
        # few input columns has a several times faster backward in this layout.
        f = self.in_channels
        geo_weight = self.edge_mlp[0].weight[:, 2 * f:].t().contiguous()
        m = torch.addmm(centre_i + neighbour_j, geo, geo_weight)
        m = self.act(self.edge_mlp[2](self.act(m)))
        if self.att_mlp is not None:
            m = m * torch.sigmoid(self.att_mlp[0](m))
        if self.coord_mlp is None:
            return m if edge_weight is None else m * edge_weight
        weight = F.linear(self.act(self.coord_mlp[0](m)), self.coord_mlp[2].weight)
        if self.tanh:
            weight = self.coords_range * torch.tanh(weight)
        if self.normalize:
            weight = weight / (vec.detach().norm(dim=-1, keepdim=True) + self.eps)
        out = torch.cat([m, vec * weight], dim=-1)
        return out if edge_weight is None else out * edge_weight

    def check_inputs(self, h: Tensor, pos: Tensor, edge_index: Tensor, vel: Optional[Tensor] = None,
                     edge_attr: Optional[Tensor] = None, shift: Optional[Tensor] = None,
                     edge_weight: Optional[Tensor] = None) -> None:
        """Shapes of the layer's inputs (and finite velocities); ``ValueError`` naming the
        argument. :meth:`forward` calls it unless ``validate=False``."""
        if h.dim() != 2 or h.size(-1) != self.in_channels:
            raise ValueError(f"h must have shape [N, {self.in_channels}], got {list(h.shape)}")
        if h.size(0) == 0:
            raise ValueError("h is empty: the graph has no nodes")
        if pos.shape != (h.size(0), 3):
            raise ValueError(f"pos must have shape [{h.size(0)}, 3] (one row per node of h), got {list(pos.shape)}")
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f"edge_index must have shape [2, E], got {list(edge_index.shape)}")
        num_edges = edge_index.size(1)
        if self.velocity:
            if vel is None:
                raise ValueError("vel is missing: this EGNNConv was built with velocity=True")
            if vel.shape != pos.shape:
                raise ValueError(f"vel must have the shape of pos {list(pos.shape)}, got {list(vel.shape)}")
        elif vel is not None:
            raise ValueError("vel was given but this EGNNConv was built with velocity=False")
        if self.edge_dim > 0:
            if edge_attr is None:
                raise ValueError(f"edge_attr is missing: this EGNNConv was built with edge_dim={self.edge_dim}")
            if edge_attr.shape != (num_edges, self.edge_dim):
                raise ValueError(f"edge_attr must have shape [E={num_edges}, edge_dim={self.edge_dim}], "
                                 f"got {list(edge_attr.shape)}")
        elif edge_attr is not None:
            raise ValueError(f"edge_attr was given (shape {list(edge_attr.shape)}) but this EGNNConv was "
                             "built with edge_dim=0")
        if shift is not None and shift.shape != (num_edges, 3):
            raise ValueError(f"shift must have shape [E={num_edges}, 3], got {list(shift.shape)}")
        if edge_weight is not None and edge_weight.shape != (num_edges, 1):
            raise ValueError(f"edge_weight must have shape [E={num_edges}, 1], got {list(edge_weight.shape)}")
        # NaN/inf in pos is reported by check_edge_vec_inputs.
        if self.velocity and values_checked() and not bool(torch.isfinite(vel).all()):
            raise ValueError("vel contains NaN or inf")

    def __repr__(self) -> str:
        opts = [f"edge_dim={self.edge_dim}"] if self.edge_dim else []
        opts += [name for name in ("attention", "velocity", "normalize", "tanh") if getattr(self, name)]
        if not self.update_coords:
            opts.append("update_coords=False")
        opts.append(f"coords_agg={self.coords_agg!r}")
        return (f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
                f"hidden_channels={self.hidden_channels}, {', '.join(opts)})")
