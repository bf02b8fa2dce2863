"""The steerable E(3)-equivariant graph neural network (SEGNN) as a whole model on PyG data,
and the node-input helpers it shares with :class:`~equigraph.models.TFN`."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from e3nn import o3
from torch import Tensor
from torch.nn import ModuleList
from torch_geometric.utils import scatter

from equigraph.data import keys as K
from equigraph.nn.conv.segnn import SEGNNConv
from equigraph.nn.cutoff import PolynomialCutoff
from equigraph.nn.geometry import check_edge_vec_inputs, edge_vec_unchecked, safe_norm
from equigraph.nn.steerable import (
    BalancedIrreps,
    O3TensorProduct,
    O3TensorProductGate,
    SteerableAttributes,
    WeightBalancedIrreps,
    as_irreps,
    check_tp_backend,
    edge_attributes,
)

from . import inputs
from .contract import EquigraphModel, Output, check_supplied_edges, resolve_interaction_graph
from .readout import Readout
from .registry import register_model

__all__ = ["SEGNN"]

_SUBSPACES = ("weightbalanced", "balanced")
_DISTANCES = (None, "length", "squared_length")
_REDUCES = ("sum", "mean", None)


# --------------------------------------------------------------------------- shared inputs
def check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def check_keys(name: str, keys: Any) -> Tuple[str, ...]:
    """A list of data keys from a config value (a list or tuple of distinct strings)."""
    if isinstance(keys, str) or not isinstance(keys, (list, tuple)) or \
            not all(isinstance(k, str) and k for k in keys):
        raise ValueError(f"{name} must be a list of data keys (strings), got {keys!r}")
    if len(set(keys)) != len(keys):
        raise ValueError(f"{name} lists a key twice: {list(keys)}")
    return tuple(keys)


def node_scalars(data, key: str, num_nodes: int, dtype: torch.dtype) -> Tensor:
    """A per-node scalar input such as ``data.charges``, ``[N]`` or ``[N, 1]``, as ``[N, 1]``."""
    v = getattr(data, key, None)
    if v is None:
        raise ValueError(f"data.{key} is missing: the model was built with it as a scalar node input")
    if not isinstance(v, Tensor) or v.shape not in ((num_nodes,), (num_nodes, 1)):
        raise ValueError(f"data.{key} must have shape [N={num_nodes}] or [N, 1], got "
                         f"{list(getattr(v, 'shape', []))}")
    return v.reshape(num_nodes, 1).to(dtype)


def node_vector_inputs(data, keys: Sequence[str], pos: Tensor, batch: Optional[Tensor],
                       num_graphs: int) -> List[Tensor]:
    """The ``[N, 3]`` vector inputs named by ``keys``; ``"pos"`` is the position relative to
    the centroid of its graph (translation invariant)."""
    out = []
    for key in keys:
        if key == K.POS:
            if batch is None:
                out.append(pos - pos.mean(dim=0, keepdim=True))
            else:
                centre = scatter(pos, batch, dim=0, dim_size=num_graphs, reduce="mean")
                out.append(pos - centre.index_select(0, batch))
        else:
            v = inputs.node_vectors(data, key, pos.size(0), "the model was built with it as a vector input")
            out.append(v.to(pos.dtype))
    return out


def irreps_features(data, irreps: str, dim: int, num_nodes: int, dtype: torch.dtype) -> Tensor:
    """``data.x`` as ``[N, dim]`` (a 1-D ``x`` is one channel) for input irreps ``irreps`` (their
    text: ``torch.compile`` cannot guard on e3nn ``Irreps`` objects, whose ``Irrep`` has no
    ``len``)."""
    x = getattr(data, K.X, None)
    if x is None:
        raise ValueError(f"data.{K.X} is missing: the model was built with irreps_in={irreps}")
    if x.dim() == 1:
        x = x.unsqueeze(-1)
    if x.dim() != 2 or x.shape != (num_nodes, dim):
        raise ValueError(f"data.{K.X} must have shape [N={num_nodes}, {dim}] to match irreps_in={irreps}, "
                         f"got {list(x.shape)}")
    return x.to(dtype)


def num_graphs_of(data, batch: Optional[Tensor]) -> int:
    if batch is None:
        return 1
    num = getattr(data, "num_graphs", None)
    return int(num) if num is not None else int(batch.max()) + 1


# --------------------------------------------------------------------------- layers
def _hidden_irreps(hidden_irreps, hidden_channels: int, lmax_h: int, attr: o3.Irreps, subspace: str) -> o3.Irreps:
    if hidden_irreps is not None:
        irreps = as_irreps(hidden_irreps, "hidden_irreps")
        if irreps.dim == 0:
            raise ValueError("hidden_irreps is empty")
        sorted_irreps = irreps.sort().irreps.simplify()
        if sorted_irreps != irreps:
            raise ValueError(f"hidden_irreps must be sorted and simplified (scalars first), got {irreps}; "
                             f"use {sorted_irreps}")
        return irreps
    if subspace not in _SUBSPACES:
        raise ValueError(f"subspace must be one of {_SUBSPACES}, got {subspace!r}")
    if subspace == "weightbalanced":
        return WeightBalancedIrreps(o3.Irreps(f"{hidden_channels}x0e"), attr, sh=True, lmax=lmax_h)
    return BalancedIrreps(lmax_h, hidden_channels, True)


def _reachable(ir_in: o3.Irrep, attr: o3.Irreps, targets: o3.Irreps) -> bool:
    wanted = {ir for _, ir in targets}
    return any(ir in wanted for _, ir_attr in attr for ir in ir_in * ir_attr)


@register_model("segnn")
class SEGNN(EquigraphModel):
    r"""The steerable E(3)-equivariant graph neural network from the `"Geometric and
    Physical Quantities Improve E(3) Equivariant Message Passing"
    <https://arxiv.org/abs/2110.02905>`_ paper (Brandstetter et al., ICLR 2022): steerable
    node and edge attributes, an embedding conditioned on the node attributes,
    ``num_layers`` :class:`~equigraph.nn.conv.SEGNNConv` layers, a steerable node MLP
    before pooling and an MLP after it.

    .. math::
        \mathbf{a}_{ij} = Y(\hat{\mathbf{r}}_{ij}), \quad
        \mathbf{a}_i = \frac{1}{|\mathcal{N}(i)|} \sum_{j} \mathbf{a}_{ij}
            + \sum_{\mathbf{v}} Y(\hat{\mathbf{v}}_i), \quad
        \mathbf{h}^0_i = \mathrm{TP}_\mathrm{emb}(\mathbf{f}_i; \mathbf{a}_i), \quad
        \mathbf{h}^{l+1} = \mathrm{SEGNNConv}_l(\mathbf{h}^l; \mathbf{a}_{ij}, \mathbf{a}_i,
            \mathbf{e}_{ij})

    then :math:`\mathbf{g}_i = \mathrm{TP}_2(\mathrm{Gate}(\mathrm{TP}_1(\mathbf{h}^L_i;
    \mathbf{a}_i)); \mathbf{a}_i)` (the original's ``pre_pool1``, ``pre_pool2``) and

    - invariant scalars (``out_channels``): :math:`\mathbf{g}_i` are
      ``out_channels x hidden_irreps.num_irreps`` even scalars, read out by an equigraph
      :class:`~equigraph.models.readout.Readout` (a two-layer MLP per node, the sum or mean
      over the graph, with ``graph_mlp`` the original's post-pool MLP; its ``scale``,
      ``shift`` and per-element ``atom_ref`` buffers put ``"y"`` in the target's unit,
      fitted by the trainer);
    - steerable outputs (``irreps_out``, e.g. ``"1x1o"``): per node
      :math:`\mathbf{g}_i` has irreps ``irreps_out``; per graph it is pooled and, with
      ``graph_mlp``, passed through the original's ``post_pool1`` (tensor product and gate)
      and ``post_pool2``;
    - ``positions=True`` (N-body, ``irreps_out="1x1o"``, per node): as in the original,
      the 1o output is a displacement added to the input position, returned as the point
      ``"pos"``.

    The node input :math:`\mathbf{f}_i` is ``data.x`` of irreps ``irreps_in`` (or a one-hot
    of ``data.z`` over ``max_z`` elements), then one scalar per ``scalar_inputs`` key and one
    ``1o`` vector per ``vector_inputs`` key (``"pos"`` there is the position relative to the
    centroid of its graph). ``attribute_vectors`` adds the harmonics of those node vectors
    to :math:`\mathbf{a}_i` (the original adds the velocity's on N-body). The additional
    message features :math:`\mathbf{e}_{ij}` are ``distance`` (:math:`\|\mathbf{r}_{ij}\|`
    or :math:`\|\mathbf{r}_{ij}\|^2`) followed by the ``edge_dim`` columns of
    ``data.edge_attr``.

    With a radius interaction graph and ``envelope=True`` every message is multiplied by
    :math:`u(r_{ij})` (:class:`~equigraph.nn.PolynomialCutoff`, :math:`p = 6`) and the node
    attribute becomes the smooth weighted mean
    :math:`\mathbf{a}_i = (\mathbf{a}_\varnothing + \sum_j u_{ij}\mathbf{a}_{ij}) /
    (1 + \sum_j u_{ij})` (:math:`\mathbf{a}_\varnothing = (Y_0, 0, \dots)`, the attribute
    of a node without neighbours), so that outputs and their first two derivatives are
    continuous when a neighbour crosses the cutoff (forces, relaxations, MD). The paper's
    model has neither (``envelope=False``; the QM9 configuration). Ignored for graphs
    without a cutoff (full, kNN).

    A node without neighbours gets the attribute :math:`(Y_0, 0, \dots)` and no messages, so
    a graph with one atom has a defined, finite output. A zero-length edge (coincident atoms,
    a self-loop in ``data.edge_index``) raises a ``ValueError`` naming it unless
    ``allow_zero_length``. Zero node vectors in ``attribute_vectors`` get the trivial
    attribute :math:`(Y_0, 0, \dots)` (the original's harmonics would be NaN).

    Configurations of the paper (``configs/nbody_segnn.yaml``, ``configs/qm9_segnn.yaml``):
    N-body ``SEGNN(irreps_in="1x0e", vector_inputs=["pos", "vel"],
    attribute_vectors=["vel"], edge_dim=1, distance="length", lmax_h=1, lmax_attr=1,
    hidden_channels=64, num_layers=4, irreps_out="1x1o", reduce=None, positions=True,
    normalization="integral", interaction_graph="full")`` on ``x`` = speed, ``edge_attr`` =
    :math:`q_i q_j` (the original centres each position on the mean of its own three
    coordinates, which breaks equivariance, SEGNN issue #12; here on its graph's centroid);
    QM9 ``SEGNN(irreps_in="5x0e", lmax_h=2, lmax_attr=3, hidden_channels=128,
    num_layers=7, norm="instance", distance="squared_length", out_channels=1,
    reduce="mean", interaction_graph=2.0, envelope=False)`` on one-hot elements.

    Args:
        irreps_in (str, optional): irreps of ``data.x``; :obj:`None` reads ``data.z``
            instead (one-hot over ``max_z``). (default: :obj:`None`)
        hidden_channels (int, optional): scalar width the hidden irreps are balanced
            against. (default: :obj:`64`)
        num_layers (int, optional): number of SEGNN layers. (default: :obj:`4`)
        lmax_h (int, optional): highest order of the hidden features. (default: :obj:`1`)
        lmax_attr (int, optional): highest order of the attributes. (default: :obj:`1`)
        hidden_irreps (str, optional): hidden irreps, overriding ``hidden_channels``,
            ``lmax_h`` and ``subspace`` (sorted, scalars first). (default: :obj:`None`)
        subspace (str, optional): :obj:`"weightbalanced"`
            (:func:`~equigraph.nn.steerable.WeightBalancedIrreps`) or :obj:`"balanced"`
            (:func:`~equigraph.nn.steerable.BalancedIrreps`). (default: :obj:`"weightbalanced"`)
        out_channels (int, optional): number of invariant scalars ``"y"`` (through a
            :class:`Readout`). (default: :obj:`None`)
        irreps_out (str, optional): steerable ``"y"`` instead, e.g. ``"1x1o"``.
            (default: :obj:`None`)
        reduce (str, optional): :obj:`"sum"`, :obj:`"mean"` over each graph, or :obj:`None`
            for per-node outputs. (default: :obj:`"sum"`)
        graph_mlp (bool, optional): the post-pool MLP of the original (ignored per node).
            (default: :obj:`True`)
        positions (bool, optional): return ``"pos"`` = input position + the ``"1x1o"``
            output. (default: :obj:`False`)
        max_z (int, optional): elements of the one-hot of ``data.z``. (default: :obj:`100`)
        scalar_inputs (list of str, optional): per-node scalar data keys appended to the
            input. (default: :obj:`()`)
        vector_inputs (list of str, optional): per-node vector data keys appended as ``1o``.
            (default: :obj:`()`)
        attribute_vectors (list of str, optional): node vectors whose harmonics are added
            to the node attributes. (default: :obj:`()`)
        edge_dim (int, optional): width of ``data.edge_attr`` passed as message features.
            (default: :obj:`0`)
        distance (str, optional): :obj:`"length"`, :obj:`"squared_length"` or :obj:`None`:
            the edge length as a message feature. (default: :obj:`None`)
        norm (str, optional): :obj:`None`, :obj:`"instance"` or :obj:`"batch"` in every
            layer. (default: :obj:`None`)
        normalization (str, optional): of the harmonics, :obj:`"component"`,
            :obj:`"integral"` (the original's N-body) or :obj:`"norm"`. (default: :obj:`"component"`)
        interaction_graph (optional): see :class:`~equigraph.models.EGNN`.
            (default: :obj:`RadiusInteractionGraph(5.0)`)
        envelope (bool, optional): see above. (default: :obj:`True`)
        atom_ref (bool, optional): per-element reference table in the readout (energies;
            needs ``out_channels`` and a pooled output). (default: :obj:`False`)
        allow_zero_length (bool, optional): give zero-length edges the trivial attribute
            instead of raising. (default: :obj:`False`)
        tp_backend (str, optional): what computes the tensor products, ``"e3nn"`` or
            ``"cueq"`` (NVIDIA cuEquivariance, optional: ``pip install
            cuequivariance-torch``, and ``cuequivariance-ops-torch-cu12`` for its GPU
            kernels). The same function of the same parameters: a state dict loads with
            either. (default: ``"e3nn"``)

    Shapes:
        - **input:** a :class:`~torch_geometric.data.Data` / ``Batch`` with ``pos``
          :math:`(N, 3)`, ``x`` :math:`(N, \text{irreps\_in.dim})` or ``z`` :math:`(N)`,
          the named scalar :math:`(N)` and vector :math:`(N, 3)` inputs, optionally
          ``edge_index`` :math:`(2, E)`, ``edge_attr`` :math:`(E, D)`, ``shift``
          :math:`(E, 3)`, ``cell`` :math:`(G, 3, 3)`, ``batch`` :math:`(N)`
        - **output:** a dict with ``"h"`` :math:`(N, \text{hidden.dim})`, ``"y"``
          :math:`(G \text{ or } N, F_{out})`, ``"node_y"`` :math:`(N, F_{out})` (sum
          readout without post-pool MLP), ``"pos"`` :math:`(N, 3)` and ``"vec"``
          :math:`(N, 1, 3)` (the displacement) with ``positions``

    Example:
        >>> import torch
        >>> from torch_geometric.data import Data
        >>> model = SEGNN(hidden_channels=8, num_layers=1, out_channels=1, interaction_graph=3.0)
        >>> model.hidden_irreps
        4x0e+4x1o
        >>> data = Data(z=torch.tensor([8, 1, 1]), pos=torch.tensor([[0.0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]))
        >>> out = model(data)
        >>> out["y"].shape, out["h"].shape
        (torch.Size([1, 1]), torch.Size([3, 16]))
    """

    graph_from_input_positions = True

    def __init__(
        self,
        irreps_in: Optional[str] = None,
        hidden_channels: int = 64,
        num_layers: int = 4,
        lmax_h: int = 1,
        lmax_attr: int = 1,
        hidden_irreps: Optional[str] = None,
        subspace: str = "weightbalanced",
        out_channels: Optional[int] = None,
        irreps_out: Optional[str] = None,
        reduce: Optional[str] = "sum",
        graph_mlp: bool = True,
        positions: bool = False,
        max_z: int = 100,
        scalar_inputs: Sequence[str] = (),
        vector_inputs: Sequence[str] = (),
        attribute_vectors: Sequence[str] = (),
        edge_dim: int = 0,
        distance: Optional[str] = None,
        norm: Optional[str] = None,
        normalization: str = "component",
        interaction_graph: Any = None,
        envelope: bool = True,
        atom_ref: bool = False,
        allow_zero_length: bool = False,
        tp_backend: str = "e3nn",
    ):
        super().__init__()
        self.tp_backend = check_tp_backend("tp_backend", tp_backend)
        check_positive_int("hidden_channels", hidden_channels)
        check_positive_int("num_layers", num_layers)
        check_positive_int("lmax_h", lmax_h, 0)
        check_positive_int("lmax_attr", lmax_attr, 0)
        check_positive_int("edge_dim", edge_dim, 0)
        if out_channels is not None:
            check_positive_int("out_channels", out_channels)
        if out_channels is not None and irreps_out is not None:
            raise ValueError("give out_channels (invariant scalars) or irreps_out (steerable), not both")
        if reduce not in _REDUCES:
            raise ValueError(f"reduce must be one of {_REDUCES}, got {reduce!r}")
        if distance not in _DISTANCES:
            raise ValueError(f"distance must be one of {_DISTANCES}, got {distance!r}")
        self.scalar_inputs = check_keys("scalar_inputs", scalar_inputs)
        self.vector_inputs = check_keys("vector_inputs", vector_inputs)
        self.attribute_vectors = check_keys("attribute_vectors", attribute_vectors)
        if irreps_in is None:
            check_positive_int("max_z", max_z)
            self.irreps_in = None
            features = o3.Irreps(f"{max_z}x0e")
        else:
            self.irreps_in = as_irreps(irreps_in, "irreps_in")
            self._irreps_in_text, self._irreps_in_dim = str(self.irreps_in), self.irreps_in.dim
            features = self.irreps_in
        n_scalars, n_vectors = len(self.scalar_inputs), len(self.vector_inputs)
        extra_inputs = o3.Irreps(f"{n_scalars}x0e") + o3.Irreps(f"{n_vectors}x1o")
        self.irreps_input = (features + extra_inputs).remove_zero_multiplicities().simplify()
        if self.irreps_input.dim == 0:
            raise ValueError("irreps_in is empty and there are no scalar_inputs or vector_inputs")

        self.attributes = SteerableAttributes(lmax_attr, normalization, allow_zero_length)
        attr = self.attributes.irreps_out
        self.hidden_irreps = _hidden_irreps(hidden_irreps, hidden_channels, lmax_h, attr, subspace)
        for mul, ir in self.irreps_input:
            if not _reachable(ir, attr, self.hidden_irreps):
                what = "irreps_in" if self.irreps_in is not None and ir in {i for _, i in self.irreps_in} else "input"
                raise ValueError(f"{what}: {mul}x{ir} (order l={ir.l}) reaches none of the hidden irreps "
                                 f"{self.hidden_irreps} through attributes up to lmax_attr={lmax_attr}: this SEGNN "
                                 "would ignore it; raise lmax_h / lmax_attr or drop it")
        unreached = [f"{mul}x{ir}" for mul, ir in self.hidden_irreps
                     if not any(_reachable(i, attr, o3.Irreps([(1, ir)])) for _, i in self.irreps_input)]
        if unreached:
            raise ValueError(f"hidden irreps {' + '.join(unreached)} cannot be reached from the input "
                             f"{self.irreps_input} through attributes up to lmax_attr={lmax_attr}; raise lmax_attr")
        extra = (1 if distance else 0) + edge_dim
        self.additional_message_irreps = o3.Irreps(f"{extra}x0e") if extra else None

        if positions:
            if irreps_out is None or as_irreps(irreps_out, "irreps_out") != o3.Irreps("1x1o") or reduce is not None:
                raise ValueError('positions=True needs irreps_out="1x1o" and reduce=None (a displacement per node)')
        if atom_ref and (out_channels is None or reduce is None):
            raise ValueError("atom_ref=True needs a graph readout of invariant scalars (out_channels and reduce)")
        self.irreps_out = None if irreps_out is None else as_irreps(irreps_out, "irreps_out")
        if self.irreps_out is not None and self.irreps_out.dim == 0:
            raise ValueError("irreps_out is empty")
        self.out_channels = out_channels
        self.reduce = reduce
        self.positions = bool(positions)
        self.num_layers, self.max_z, self.edge_dim, self.distance = num_layers, max_z, edge_dim, distance
        self.norm, self.graph_mlp = norm, bool(graph_mlp) and reduce is not None
        self.interaction_graph = resolve_interaction_graph(interaction_graph)
        cutoff = self.cutoff
        self.envelope = PolynomialCutoff(cutoff) if envelope and cutoff is not None else None

        hidden = self.hidden_irreps
        # Sub-layers initialise themselves on construction; fork_rng keeps those draws off the
        # global generator, so that reset_parameters below makes every draw.
        with torch.random.fork_rng(devices=[]):
            backend = self.tp_backend
            self.embedding = O3TensorProduct(self.irreps_input, hidden, attr, backend=backend)
            # Inputs are validated once per forward (below), not again in every layer.
            self.convs = ModuleList([
                SEGNNConv(hidden, hidden, hidden, attr, attr, additional_message_irreps=self.additional_message_irreps,
                          norm=norm, validate=False, tp_backend=backend)
                for _ in range(num_layers)
            ])
            self.readout = self.post_pool1 = self.post_pool2 = None
            self.pre_pool1 = self.pre_pool2 = None
            if out_channels is not None:
                pooled = o3.Irreps(f"{out_channels * hidden.num_irreps}x0e")
                self.pre_pool1 = O3TensorProductGate(hidden, hidden, attr, backend=backend)
                self.pre_pool2 = O3TensorProduct(hidden, pooled, attr, backend=backend)
                self.readout = Readout(pooled.dim, out_channels, hidden_channels=pooled.dim, reduce=reduce,
                                       graph_mlp=self.graph_mlp, max_z=max_z if atom_ref else None)
            elif self.irreps_out is not None:
                self.pre_pool1 = O3TensorProductGate(hidden, hidden, attr, backend=backend)
                if self.graph_mlp:
                    pooled = self._pooled_irreps(self.irreps_out, hidden.num_irreps)
                    self.pre_pool2 = O3TensorProduct(hidden, pooled, attr, backend=backend)
                    self.post_pool1 = O3TensorProductGate(pooled, pooled, backend=backend)
                    self.post_pool2 = O3TensorProduct(pooled, self.irreps_out, backend=backend)
                else:
                    try:
                        self.pre_pool2 = O3TensorProduct(hidden, self.irreps_out, attr, backend=backend)
                    except ValueError as err:
                        raise ValueError(f"irreps_out: {err}") from None
        self.reset_parameters()

    @staticmethod
    def _pooled_irreps(irreps_out: o3.Irreps, copies: int) -> o3.Irreps:
        # The original pools `irreps_out x num_irreps`; the gate after pooling needs even
        # scalars to gate any l > 0 part, so they are added when irreps_out has none.
        pooled = (irreps_out * copies).sort().irreps.simplify()
        if any(ir.l > 0 for _, ir in pooled) and not any(ir == o3.Irrep("0e") for _, ir in pooled):
            pooled = (o3.Irreps(f"{copies}x0e") + pooled).sort().irreps.simplify()
        return pooled

    def reset_parameters(self):
        # Every submodule is initialised here only, in a fixed order, so that a model built
        # after torch.manual_seed(s) equals one reset after torch.manual_seed(s).
        self.embedding.reset_parameters()
        for conv in self.convs:
            conv.reset_parameters()
        for layer in (self.pre_pool1, self.pre_pool2, self.post_pool1, self.post_pool2, self.readout):
            if layer is not None:
                layer.reset_parameters()

    @property
    def supplied_edge_limit(self) -> Optional[float]:
        return self.envelope.cutoff if self.envelope is not None else None

    @property
    def outputs(self) -> Dict[str, Output]:
        out = {K.H: Output(str(self.hidden_irreps), "node")}
        if self.readout is not None:
            out.update(self.readout_outputs())
        elif self.irreps_out is not None:
            out[K.Y] = Output(str(self.irreps_out), "node" if self.reduce is None else "graph")
        if self.positions:
            out[K.POS] = Output("point", "node")
            out[K.VEC] = Output("vector", "node")
        return out

    def _node_attributes(self, edge_sh: Tensor, edge_index: Tensor, weight: Tensor, num_nodes: int) -> Tensor:
        # The smooth mean: neighbours fade in and out with the envelope weight, and the
        # trivial attribute (that of a node without neighbours) has weight one.
        trivial = edge_attributes(edge_sh.new_zeros(1, 3), self.attributes.lmax, self.attributes.normalization,
                                  allow_zero_length=True)
        total = scatter(edge_sh * weight, edge_index[1], dim=0, dim_size=num_nodes, reduce="sum")
        count = scatter(weight, edge_index[1], dim=0, dim_size=num_nodes, reduce="sum")
        return (total + trivial) / (1.0 + count)

    def forward(self, data) -> Dict[str, Tensor]:
        dtype = self.embedding.tp.weight.dtype
        pos = inputs.positions(data, dtype)
        n = pos.size(0)
        batch = getattr(data, K.BATCH, None)
        num_graphs = num_graphs_of(data, batch)
        z = x = None
        if self.irreps_in is None:
            z = inputs.atomic_numbers(data, self.max_z, n)
            features = [torch.nn.functional.one_hot(z, self.max_z).to(dtype)]
        else:
            x = irreps_features(data, self._irreps_in_text, self._irreps_in_dim, n, dtype)
            features = [x]
        if self.readout is not None and self.readout.atom_ref is not None and z is None:
            z = inputs.atomic_numbers(data, self.readout.max_z, n)
        features += [node_scalars(data, key, n, dtype) for key in self.scalar_inputs]
        features += node_vector_inputs(data, self.vector_inputs, pos, batch, num_graphs)
        attr_vectors = node_vector_inputs(data, self.attribute_vectors, pos, batch, num_graphs)
        edge_index, shift, cell = self.graph(data)
        num_edges = edge_index.size(1) if edge_index.dim() == 2 else -1
        edge_attr = inputs.edge_features(data, self.edge_dim, num_edges) if self.edge_dim > 0 else None
        # Inputs are validated here, once per forward.
        check_edge_vec_inputs(pos, edge_index, shift, cell, batch)
        vector_keys = set(self.vector_inputs + self.attribute_vectors) - {K.POS}
        inputs.check_finite({K.X: x, K.EDGE_ATTR: edge_attr, **dict(zip(self.scalar_inputs, features[1:])),
                             **{k: getattr(data, k) for k in vector_keys}})

        vec = edge_vec_unchecked(pos, edge_index, shift, cell, batch)
        edge_sh, node_attr = self.attributes(vec, edge_index, n)
        length = None
        edge_weight = None
        if self.envelope is not None or self.distance is not None:
            length = safe_norm(vec, dim=-1, keepdim=True)
        if self.envelope is not None:
            check_supplied_edges(data, length, self.supplied_edge_limit)
            edge_weight = self.envelope(length)
            node_attr = self._node_attributes(edge_sh, edge_index, edge_weight, n)
        for v in attr_vectors:
            node_attr = node_attr + edge_attributes(v, self.attributes.lmax, self.attributes.normalization,
                                                    allow_zero_length=True)
        extra = []
        if self.distance == "length":
            extra.append(length)
        elif self.distance == "squared_length":
            extra.append(vec.square().sum(dim=-1, keepdim=True))
        if edge_attr is not None:
            extra.append(edge_attr.to(dtype))
        extra = torch.cat(extra, dim=-1) if extra else None

        h = self.embedding(torch.cat(features, dim=-1), node_attr)
        for conv in self.convs:
            h = conv(h, edge_index, edge_sh, node_attr, extra, batch, edge_weight=edge_weight)
        out = {K.H: h}
        if self.pre_pool1 is None:
            return out
        g = self.pre_pool2(self.pre_pool1(h, node_attr), node_attr)
        if self.readout is not None:
            out.update(self.apply_readout(g, batch, num_graphs, z))
            return out
        if self.reduce is not None:
            index = batch if batch is not None else torch.zeros(n, dtype=torch.long, device=pos.device)
            g = scatter(g, index, dim=0, dim_size=num_graphs, reduce=self.reduce)
            if self.post_pool1 is not None:
                g = self.post_pool2(self.post_pool1(g))
        out[K.Y] = g
        if self.positions:
            out[K.POS] = pos + g
            out[K.VEC] = g.unsqueeze(1)
        return out

    def __repr__(self) -> str:
        node_in = f"irreps_in={self.irreps_in}" if self.irreps_in is not None else f"max_z={self.max_z}"
        head = (f"out_channels={self.out_channels}" if self.out_channels is not None
                else f"irreps_out={self.irreps_out}")
        return (f"{self.__class__.__name__}({node_in}, hidden_irreps={self.hidden_irreps}, "
                f"num_layers={self.num_layers}, lmax_attr={self.attributes.lmax}, {head}, reduce={self.reduce!r}, "
                f"norm={self.norm!r}, interaction_graph={self.interaction_graph}, "
                f"envelope={self.envelope is not None}"
                + (f", tp_backend={self.tp_backend!r})" if self.tp_backend != "e3nn" else ")"))
