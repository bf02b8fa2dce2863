"""SchNet on equigraph's model contract: PyG's building blocks, equigraph's graphs (periodic
included) and readout."""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch
from torch import Tensor
from torch.nn import Embedding, ModuleList
from torch_geometric.nn.models.schnet import GaussianSmearing, InteractionBlock, ShiftedSoftplus

from equigraph.data import keys as K
from equigraph.nn.geometry import check_edge_vec_inputs, edge_vec_unchecked, safe_norm

from . import inputs
from .contract import EquigraphModel, Output, resolve_interaction_graph
from .readout import Readout
from .registry import register_model

__all__ = ["SchNet"]


@register_model("schnet")
class SchNet(EquigraphModel):
    r"""The continuous-filter convolutional network SchNet from the `"SchNet: A
    Continuous-filter Convolutional Neural Network for Modeling Quantum Interactions"
    <https://arxiv.org/abs/1706.08566>`_ paper, built from PyG's own blocks
    (:class:`torch_geometric.nn.models.schnet.InteractionBlock`, ``GaussianSmearing``,
    ``ShiftedSoftplus``) but running on equigraph's graph (:meth:`graph`: ``data.edge_index``
    with periodic ``shift`` and ``cell``, or the interaction graph), with distances from
    :func:`equigraph.nn.edge_vec`, and a :class:`~equigraph.models.readout.Readout` (output
    scale, shift and per-element references), so that it works on periodic slabs and crystals
    and can be wrapped by :class:`~equigraph.models.ForceField`.

    .. math::
        \mathbf{h}^0_i = \mathrm{Emb}(z_i), \qquad
        \mathbf{h}^{l+1}_i = \mathbf{h}^l_i + \mathrm{Dense}\Big(\mathrm{ssp}\Big(
            \sum_{j} \mathbf{W}^l\mathbf{h}^l_j \odot \phi^l(e(r_{ij}))\, C(r_{ij})\Big)\Big),
        \qquad \mathbf{y} = \mathrm{Readout}(\mathbf{h}^L)

    with :math:`e(r)` ``num_gaussians`` Gaussians on :math:`[0, c]`, :math:`\phi` the filter
    network and SchNet's own cosine cutoff :math:`C(r) = \frac{1}{2}(\cos(\pi r / c) + 1)`,
    whose value and slope vanish at :math:`r = c`: energies and forces are continuous when a
    neighbour crosses the cutoff. Edges of the graph longer than :math:`c` (e.g. those of a
    neighbour list built with a skin) are dropped, so they change nothing.

    The readout is PyG SchNet's: ``Linear(F, F/2)``, shifted softplus, ``Linear(F/2, 1)``
    per atom, then a sum (or mean). With the same weights the model equals PyG's
    :class:`~torch_geometric.nn.models.SchNet` on the same graph (:meth:`from_pyg`).

    Args:
        hidden_channels (int, optional): Size of the atom features. (default: :obj:`128`)
        num_filters (int, optional): Number of filters. (default: :obj:`128`)
        num_interactions (int, optional): Number of interaction blocks. (default: :obj:`6`)
        num_gaussians (int, optional): Number of Gaussians of the distance expansion.
            (default: :obj:`50`)
        cutoff (float, optional): Cutoff :math:`c` of the cosine cutoff and of the Gaussian
            centres, Å; :obj:`None` takes the interaction graph's. (default: :obj:`None`)
        out_channels (int, optional): Size of the readout ``"y"``; :obj:`None` builds no
            readout. (default: :obj:`1`)
        max_z (int, optional): Rows of the atom embedding (``z = 0`` is padding, as in PyG).
            (default: :obj:`100`)
        reduce (str, optional): :obj:`"sum"` or :obj:`"mean"` over each graph's atoms, or
            :obj:`None` for a per-atom ``"y"``. (default: :obj:`"sum"`)
        interaction_graph (optional): builds the graph when the data has no
            ``edge_index``: an object with ``from_data(data)``, a radius in Å, ``"full"`` or
            a spec; its radius must reach ``cutoff``. (default: a radius graph of
            ``cutoff``, or of 5 Å)
        atom_ref (bool, optional): Give the readout a per-element reference table
            (``max_z`` rows) that the trainer fits for energies. (default: :obj:`False`)

    Shapes:
        - **input:** a :class:`~torch_geometric.data.Data` / ``Batch`` with ``z``
          :math:`(N)`, ``pos`` :math:`(N, 3)`, optionally ``batch`` :math:`(N)`,
          ``edge_index`` :math:`(2, E)`, ``shift`` :math:`(E, 3)`, ``cell``
          :math:`(G, 3, 3)`, ``pbc`` :math:`(G, 3)`
        - **output:** a dict with ``"h"`` :math:`(N, F)`, ``"y"`` :math:`(G, F_{out})` (or
          :math:`(N, F_{out})` with ``reduce=None``), ``"node_y"`` :math:`(N, F_{out})` with
          sum pooling

    Example:
        >>> import torch
        >>> from torch_geometric.data import Data
        >>> model = SchNet(hidden_channels=16, num_filters=16, num_interactions=2, cutoff=4.0)
        >>> data = Data(z=torch.tensor([8, 1, 1]), pos=torch.tensor([[0.0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]))
        >>> out = model(data)
        >>> out["y"].shape, out["node_y"].shape, out["h"].shape
        (torch.Size([1, 1]), torch.Size([3, 1]), torch.Size([3, 16]))
    """

    graph_from_input_positions = True

    def __init__(
        self,
        hidden_channels: int = 128,
        num_filters: int = 128,
        num_interactions: int = 6,
        num_gaussians: int = 50,
        cutoff: Optional[float] = None,
        out_channels: Optional[int] = 1,
        max_z: int = 100,
        reduce: Optional[str] = "sum",
        interaction_graph: Any = None,
        atom_ref: bool = False,
    ):
        super().__init__()
        for name, value in (("hidden_channels", hidden_channels), ("num_filters", num_filters),
                            ("num_interactions", num_interactions), ("num_gaussians", num_gaussians),
                            ("max_z", max_z)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if num_gaussians < 2:
            raise ValueError(f"num_gaussians must be at least 2 (their spacing sets their width), got {num_gaussians}")
        if hidden_channels < 2:
            raise ValueError(f"hidden_channels must be at least 2 (the readout halves it), got {hidden_channels}")
        if out_channels is not None and (not isinstance(out_channels, int) or isinstance(out_channels, bool)
                                         or out_channels <= 0):
            raise ValueError(f"out_channels must be a positive int or None, got {out_channels!r}")
        if atom_ref and (out_channels is None or reduce is None):
            raise ValueError("atom_ref=True needs a graph readout (out_channels and reduce='sum' or 'mean')")
        if cutoff is not None and (isinstance(cutoff, bool) or not isinstance(cutoff, (int, float))
                                   or not 0 < cutoff < float("inf")):
            raise ValueError(f"cutoff must be a positive number (Å) or None, got {cutoff!r}")
        if interaction_graph is None and cutoff is not None:
            interaction_graph = float(cutoff)
        self.interaction_graph = resolve_interaction_graph(interaction_graph)
        graph_cutoff = getattr(self.interaction_graph, "cutoff", None)
        if cutoff is None:
            if graph_cutoff is None:
                raise ValueError(f"cutoff: SchNet's cosine cutoff needs a radius; the interaction graph "
                                 f"{self.interaction_graph} has none, so give cutoff=")
            cutoff = graph_cutoff
        elif graph_cutoff is not None and graph_cutoff < cutoff:
            raise ValueError(f"interaction_graph: its radius {graph_cutoff} Å is shorter than cutoff={cutoff} Å, so "
                             "neighbours would vanish before the cosine cutoff reaches 0")
        self._cutoff = float(cutoff)
        self.hidden_channels = hidden_channels
        self.num_filters = num_filters
        self.num_interactions = num_interactions
        self.num_gaussians = num_gaussians
        self.out_channels = out_channels
        self.max_z = max_z

        # Blocks initialise themselves on construction; fork_rng keeps those draws off the
        # global generator, so that reset_parameters below makes every draw.
        with torch.random.fork_rng(devices=[]):
            self.embedding = Embedding(max_z, hidden_channels, padding_idx=0)
            self.distance_expansion = GaussianSmearing(0.0, self._cutoff, num_gaussians)
            self.interactions = ModuleList([
                InteractionBlock(hidden_channels, num_gaussians, num_filters, self._cutoff)
                for _ in range(num_interactions)
            ])
            self.readout = None if out_channels is None else Readout(
                hidden_channels, out_channels, hidden_channels=hidden_channels // 2, reduce=reduce,
                act=ShiftedSoftplus(), max_z=max_z if atom_ref else None)
        self.reset_parameters()

    @property
    def cutoff(self) -> float:
        """The cosine cutoff :math:`c`, Å: edges longer than this count for nothing."""
        return self._cutoff

    #: Edges of ``data.edge_index`` longer than the cutoff are dropped in ``forward``, so a
    #: neighbour list built with a skin gives exactly the result of the cutoff graph.
    drops_edges_beyond_cutoff = True

    def reset_parameters(self):
        """PyG SchNet's initialisation (Xavier-uniform weights, zero biases)."""
        self.embedding.reset_parameters()
        for block in self.interactions:
            block.reset_parameters()
        if self.readout is not None:
            self.readout.reset_parameters()
            for layer in (self.readout.node_net[0], self.readout.node_net[2]):
                torch.nn.init.xavier_uniform_(layer.weight)
                layer.bias.data.fill_(0)

    @property
    def outputs(self) -> Dict[str, Output]:
        out = {K.H: Output("scalar", "node")}
        out.update(self.readout_outputs())
        return out

    def forward(self, data) -> Dict[str, Tensor]:
        pos = inputs.positions(data, self.embedding.weight.dtype)
        n = pos.size(0)
        z = inputs.atomic_numbers(data, self.max_z, n)
        batch = getattr(data, K.BATCH, None)
        edge_index, shift, cell = self.graph(data)
        check_edge_vec_inputs(pos, edge_index, shift, cell, batch)  # values: not under inputs.trusted()
        length = safe_norm(edge_vec_unchecked(pos, edge_index, shift, cell, batch))
        # PyG's cosine cutoff is periodic in r, not 0 beyond c: longer edges must go.
        keep = length < self._cutoff
        edge_index, length = edge_index[:, keep], length[keep]
        edge_attr = self.distance_expansion(length)
        h = self.embedding(z)
        for block in self.interactions:
            h = h + block(h, edge_index, length, edge_attr)
        out = {K.H: h}
        if self.readout is not None:
            num_graphs = getattr(data, "num_graphs", None) if batch is not None else 1
            out.update(self.apply_readout(h, batch, num_graphs, z))
        return out

    @classmethod
    def from_pyg(cls, model, interaction_graph: Any = None) -> "SchNet":
        """An equigraph SchNet with the weights of PyG's
        :class:`~torch_geometric.nn.models.SchNet` ``model``: same sizes and cutoff; its
        ``atomref`` and ``mean`` / ``std`` become the readout's per-element references and
        scale. Dipole models and a set ``scale`` have no equivalent here.

        Example:
            >>> from torch_geometric.nn.models import SchNet as PyGSchNet
            >>> ours = SchNet.from_pyg(PyGSchNet(hidden_channels=8, num_filters=8, num_interactions=1))
            >>> ours.cutoff, ours.interaction_graph.cutoff
            (10.0, 10.0)
        """
        if getattr(model, "dipole", False):
            raise ValueError("model: a dipole SchNet (dipole=True) has no equigraph equivalent")
        if getattr(model, "scale", None) is not None:
            raise ValueError("model: a SchNet with `scale` set (from_qm9_pretrained) has no equigraph equivalent")
        reduce = {"SumAggregation": "sum", "MeanAggregation": "mean"}.get(type(model.readout).__name__)
        if reduce is None:
            raise ValueError(f"model: readout {type(model.readout).__name__} is neither a sum nor a mean")
        has_ref = model.atomref is not None or model.mean is not None
        ours = cls(hidden_channels=model.hidden_channels, num_filters=model.num_filters,
                   num_interactions=model.num_interactions, num_gaussians=model.num_gaussians,
                   cutoff=float(model.cutoff), out_channels=1, max_z=model.embedding.num_embeddings, reduce=reduce,
                   interaction_graph=interaction_graph, atom_ref=has_ref)
        ours = ours.to(model.lin1.weight.dtype)
        with torch.no_grad():
            ours.embedding.load_state_dict(model.embedding.state_dict())
            for mine, theirs in zip(ours.interactions, model.interactions):
                mine.load_state_dict(theirs.state_dict())
            ours.readout.node_net[0].load_state_dict(model.lin1.state_dict())
            ours.readout.node_net[2].load_state_dict(model.lin2.state_dict())
            if model.std is not None:
                ours.readout.set_statistics(scale=float(model.std))
            if has_ref:
                ref = torch.zeros(ours.max_z, 1, dtype=ours.readout.atom_ref.dtype)
                if model.atomref is not None:
                    ref = ref + model.atomref.weight.detach().to(ref.dtype).reshape(-1, 1)[: ours.max_z]
                if model.mean is not None:
                    ref = ref + float(model.mean)
                ours.readout.set_statistics(atom_ref=ref)
        return ours

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(hidden_channels={self.hidden_channels}, num_filters={self.num_filters}, "
                f"num_interactions={self.num_interactions}, num_gaussians={self.num_gaussians}, "
                f"cutoff={self._cutoff}, out_channels={self.out_channels}, "
                f"interaction_graph={self.interaction_graph})")
