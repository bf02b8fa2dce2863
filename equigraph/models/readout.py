"""Invariant readouts shared by every model: node features to graph or node predictions."""
from __future__ import annotations

from typing import Callable, Optional, Union

import torch
from torch import Tensor
from torch.nn import Linear, Sequential
from torch.nn.utils import skip_init
from torch_geometric.nn.resolver import activation_resolver
from torch_geometric.utils import scatter

__all__ = ["Readout"]

_REDUCES = ("sum", "mean", None)


def _mlp(in_channels: int, hidden_channels: int, out_channels: int, act) -> Sequential:
    # Initialised by Readout.reset_parameters only (see EGNNConv): reproducible resets.
    return Sequential(
        skip_init(Linear, in_channels, hidden_channels),
        activation_resolver(act),
        skip_init(Linear, hidden_channels, out_channels),
    )


class Readout(torch.nn.Module):
    r"""Maps invariant node features to a prediction per graph or per node, in physical
    units.

    .. math::
        c_i = s\,\phi(\mathbf{h}_i) + E^0_{z_i}, \qquad
        \mathbf{y}_G = \sum_{i \in G} c_i + b
        \quad\text{or}\quad
        \mathbf{y}_G = s\,\rho\Big(\bigoplus_{i \in G} \phi(\mathbf{h}_i)\Big)
            + \sum_{i \in G} E^0_{z_i} + b
        \quad\text{or}\quad \mathbf{y}_i = s\,\phi(\mathbf{h}_i) + E^0_{z_i} + b

    with :math:`\phi` a two-layer MLP on each node, :math:`\bigoplus` a sum or mean over
    the nodes of each graph (``torch_geometric.utils.scatter`` over ``batch``, any order of
    ``batch``), :math:`\rho` an optional two-layer MLP on the pooled features (the EGNN
    paper's QM9 head: ``node_dec`` then sum then ``graph_dec``), and three buffers that put
    the output in physical units and travel with the weights (state dict, checkpoints,
    :func:`equigraph.models.save`): the ``scale`` :math:`s`, the per-graph ``shift``
    :math:`b`, and per-element reference values ``atom_ref`` :math:`E^0_z` (with
    ``max_z``; sum pooling only). The trainer fits them on the train split
    (:meth:`set_statistics`): :math:`b` = mean and :math:`s` = mean absolute deviation for
    an intensive target, :math:`E^0` by least squares and :math:`b = 0` for an energy, so
    that the network learns an O(1) residual.

    With sum pooling and no :math:`\rho` the prediction is a sum of per-node contributions
    :math:`c_i` (extensive when :math:`b = 0`); :meth:`forward` returns them with
    ``return_nodes=True``.

    Args:
        in_channels (int): Size of the node features.
        out_channels (int): Size of the prediction.
        hidden_channels (int, optional): Hidden size of the MLPs. (default: :obj:`in_channels`)
        reduce (str, optional): :obj:`"sum"` or :obj:`"mean"` over each graph's nodes, or
            :obj:`None` for a per-node prediction. (default: :obj:`"sum"`)
        graph_mlp (bool, optional): Apply :math:`\rho` after pooling (ignored when
            ``reduce=None``). (default: :obj:`False`)
        act (str or Callable, optional): Activation of the MLPs. (default: :obj:`"silu"`)
        max_z (int, optional): Number of elements of the ``atom_ref`` table; :obj:`None`
            keeps no table. (default: :obj:`None`)

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F)`, batch vector
          :math:`(|\mathcal{V}|)` *(optional)*, atomic numbers :math:`(|\mathcal{V}|)`
          *(with* ``max_z`` *)*
        - **output:** :math:`(G, F_{out})`, or :math:`(|\mathcal{V}|, F_{out})` with
          ``reduce=None``; with ``return_nodes=True`` also the contributions
          :math:`(|\mathcal{V}|, F_{out})` (or :obj:`None` when there are none)

    Example:
        >>> import torch
        >>> readout = Readout(16, 1, reduce="sum")
        >>> h, batch = torch.randn(5, 16), torch.tensor([0, 0, 1, 1, 1])
        >>> readout(h, batch).shape
        torch.Size([2, 1])
        >>> Readout(16, 3, reduce=None)(h).shape
        torch.Size([5, 3])
        >>> y, nodes = readout(h, batch, return_nodes=True)
        >>> torch.allclose(y[0], nodes[:2].sum(0))
        True
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: Optional[int] = None,
        reduce: Optional[str] = "sum",
        graph_mlp: bool = False,
        act: Union[str, Callable] = "silu",
        max_z: Optional[int] = None,
    ):
        super().__init__()
        hidden_channels = in_channels if hidden_channels is None else hidden_channels
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("hidden_channels", hidden_channels)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if reduce not in _REDUCES:
            raise ValueError(f"reduce must be one of {_REDUCES}, got {reduce!r}")
        if max_z is not None and (not isinstance(max_z, int) or max_z <= 0):
            raise ValueError(f"max_z must be a positive int or None, got {max_z!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.hidden_channels = hidden_channels
        self.reduce = reduce
        self.graph_mlp = graph_mlp and reduce is not None
        self.max_z = max_z
        node_out = hidden_channels if self.graph_mlp else out_channels
        self.node_net = _mlp(in_channels, hidden_channels, node_out, act)
        self.graph_net = _mlp(hidden_channels, hidden_channels, out_channels, act) if self.graph_mlp else None
        self.register_buffer("scale", torch.ones(out_channels))
        self.register_buffer("shift", torch.zeros(out_channels))
        self.register_buffer("atom_ref", torch.zeros(max_z, out_channels) if max_z is not None else None)
        self.reset_parameters()

    @property
    def has_node_contributions(self) -> bool:
        """Whether the graph prediction is a sum of per-node contributions (plus ``shift``)."""
        return self.reduce == "sum" and not self.graph_mlp

    def reset_parameters(self):
        # The output statistics (scale, shift, atom_ref) are data, not weights: kept.
        for net in (self.node_net, self.graph_net):
            if net is None:
                continue
            for layer in net:
                if isinstance(layer, Linear):
                    layer.reset_parameters()

    @torch.no_grad()
    def set_statistics(self, scale=None, shift=None, atom_ref=None) -> None:
        """Set the output scale ``[F_out]``, shift ``[F_out]`` and per-element references
        ``[max_z, F_out]`` (any of them; scalars broadcast). Non-finite values or a
        non-positive scale are errors."""
        for name, value in (("scale", scale), ("shift", shift), ("atom_ref", atom_ref)):
            if value is None:
                continue
            buf = getattr(self, name)
            if buf is None:
                raise ValueError(f"{name}: this Readout was built without max_z, so it has no per-element table")
            t = torch.as_tensor(value, dtype=buf.dtype, device=buf.device)
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"{name}: must be finite, got {t.tolist()}")
            if name == "scale" and not bool((t > 0).all()):
                raise ValueError(f"scale: must be positive, got {t.tolist()}")
            try:
                buf.copy_(t.expand_as(buf) if t.dim() < buf.dim() or t.numel() == 1 else t.reshape(buf.shape))
            except RuntimeError:
                raise ValueError(f"{name}: expected shape {list(buf.shape)}, got {list(t.shape)}") from None

    def forward(self, h: Tensor, batch: Optional[Tensor] = None, num_graphs: Optional[int] = None,
                z: Optional[Tensor] = None, return_nodes: bool = False):
        """``num_graphs`` defaults to ``batch.max() + 1`` (pass it to avoid a device sync and
        to keep trailing empty graphs); ``z`` is needed with ``max_z``."""
        if h.dim() != 2 or h.size(-1) != self.in_channels:
            raise ValueError(f"h must have shape [N, {self.in_channels}], got {list(h.shape)}")
        if h.size(0) == 0:
            raise ValueError("h is empty: there are no nodes to read out")
        ref = None
        if self.atom_ref is not None:
            if z is None:
                raise ValueError("z is needed: this Readout has per-element references (max_z)")
            ref = self.atom_ref[z]
        out = self.node_net(h)
        nodes = None
        if self.reduce is None:
            out = out * self.scale + self.shift
            out = out if ref is None else out + ref
            return (out, out) if return_nodes else out
        if batch is None:
            batch = torch.zeros(h.size(0), dtype=torch.long, device=h.device)
        elif batch.shape != (h.size(0),):
            raise ValueError(f"batch must have shape [{h.size(0)}] (one entry per node), got {list(batch.shape)}")
        if num_graphs is None:
            num_graphs = int(batch.max()) + 1
        if self.graph_net is None:
            out = out * self.scale
            if ref is not None:
                out = out + ref
            nodes = out if self.reduce == "sum" else None
            out = scatter(out, batch, dim=0, dim_size=num_graphs, reduce=self.reduce)
        else:
            out = self.graph_net(scatter(out, batch, dim=0, dim_size=num_graphs, reduce=self.reduce)) * self.scale
            if ref is not None:
                out = out + scatter(ref, batch, dim=0, dim_size=num_graphs, reduce=self.reduce)
        out = out + self.shift
        return (out, nodes) if return_nodes else out

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
                f"hidden_channels={self.hidden_channels}, reduce={self.reduce!r}, graph_mlp={self.graph_mlp}"
                f"{', max_z=' + str(self.max_z) if self.max_z is not None else ''})")
