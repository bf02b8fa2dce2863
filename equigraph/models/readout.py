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
    r"""Maps invariant node features to a prediction per graph or per node.

    .. math::
        \mathbf{y}_G = \rho\Big(\bigoplus_{i \in G} \phi(\mathbf{h}_i)\Big)
        \qquad\text{or}\qquad \mathbf{y}_i = \phi(\mathbf{h}_i)

    with :math:`\phi` a two-layer MLP on each node, :math:`\bigoplus` a sum or mean over the
    nodes of each graph (``torch_geometric.utils.scatter`` over ``batch``, any order of
    ``batch``) and :math:`\rho` an optional two-layer MLP on the pooled features (the EGNN
    paper's QM9 head: ``node_dec`` then sum then ``graph_dec``). Without :math:`\rho` the
    output is a sum of per-node terms, i.e. extensive with ``reduce="sum"``.

    Args:
        in_channels (int): Size of the node features.
        out_channels (int): Size of the prediction.
        hidden_channels (int, optional): Hidden size of the MLPs. (default: :obj:`in_channels`)
        reduce (str, optional): :obj:`"sum"` or :obj:`"mean"` over each graph's nodes, or
            :obj:`None` for a per-node prediction. (default: :obj:`"sum"`)
        graph_mlp (bool, optional): Apply :math:`\rho` after pooling (ignored when
            ``reduce=None``). (default: :obj:`False`)
        act (str or Callable, optional): Activation of the MLPs. (default: :obj:`"silu"`)

    Shapes:
        - **input:** node features :math:`(|\mathcal{V}|, F)`, batch vector
          :math:`(|\mathcal{V}|)` *(optional)*
        - **output:** :math:`(G, F_{out})`, or :math:`(|\mathcal{V}|, F_{out})` with
          ``reduce=None``

    Example:
        >>> import torch
        >>> readout = Readout(16, 1, reduce="sum")
        >>> h, batch = torch.randn(5, 16), torch.tensor([0, 0, 1, 1, 1])
        >>> readout(h, batch).shape
        torch.Size([2, 1])
        >>> Readout(16, 3, reduce=None)(h).shape
        torch.Size([5, 3])
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: Optional[int] = None,
        reduce: Optional[str] = "sum",
        graph_mlp: bool = False,
        act: Union[str, Callable] = "silu",
    ):
        super().__init__()
        hidden_channels = in_channels if hidden_channels is None else hidden_channels
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("hidden_channels", hidden_channels)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if reduce not in _REDUCES:
            raise ValueError(f"reduce must be one of {_REDUCES}, got {reduce!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.hidden_channels = hidden_channels
        self.reduce = reduce
        self.graph_mlp = graph_mlp and reduce is not None
        node_out = hidden_channels if self.graph_mlp else out_channels
        self.node_net = _mlp(in_channels, hidden_channels, node_out, act)
        self.graph_net = _mlp(hidden_channels, hidden_channels, out_channels, act) if self.graph_mlp else None
        self.reset_parameters()

    def reset_parameters(self):
        for net in (self.node_net, self.graph_net):
            if net is None:
                continue
            for layer in net:
                if isinstance(layer, Linear):
                    layer.reset_parameters()

    def forward(self, h: Tensor, batch: Optional[Tensor] = None, num_graphs: Optional[int] = None) -> Tensor:
        """``num_graphs`` defaults to ``batch.max() + 1`` (pass it to avoid a device sync and
        to keep trailing empty graphs)."""
        if h.dim() != 2 or h.size(-1) != self.in_channels:
            raise ValueError(f"h must have shape [N, {self.in_channels}], got {list(h.shape)}")
        if h.size(0) == 0:
            raise ValueError("h is empty: there are no nodes to read out")
        out = self.node_net(h)
        if self.reduce is None:
            return out
        if batch is None:
            batch = torch.zeros(h.size(0), dtype=torch.long, device=h.device)
        elif batch.shape != (h.size(0),):
            raise ValueError(f"batch must have shape [{h.size(0)}] (one entry per node), got {list(batch.shape)}")
        if num_graphs is None:
            num_graphs = int(batch.max()) + 1
        out = scatter(out, batch, dim=0, dim_size=num_graphs, reduce=self.reduce)
        if self.graph_net is not None:
            out = self.graph_net(out)
        return out

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
                f"hidden_channels={self.hidden_channels}, reduce={self.reduce!r}, graph_mlp={self.graph_mlp})")
