"""The steerable E(3)-equivariant message-passing layer of SEGNN (Brandstetter et al., 2022)."""
from __future__ import annotations

from typing import Optional

import torch
from e3nn import o3
from torch import Tensor
from torch_geometric.nn import MessagePassing
from torch_geometric.utils import scatter

from ...graph.checks import values_checked
from ..steerable.cueq import check_tp_backend
from ..steerable.gate import Gate
from ..steerable.irreps import as_irreps
from ..steerable.norm import BatchNorm, InstanceNorm
from ..steerable.tensor_product import O3TensorProduct, O3TensorProductGate

_NORMS = (None, "instance", "batch")


class SEGNNConv(MessagePassing):
    r"""The steerable E(3)-equivariant message-passing layer from the `"Geometric and
    Physical Quantities Improve E(3) Equivariant Message Passing"
    <https://arxiv.org/abs/2110.02905>`_ paper (Brandstetter, Hesselink, van der Pol,
    Bekkers, Welling; ICLR 2022):

    .. math::
        \mathbf{m}_{ij} &= \phi_m\left(\mathbf{h}_i \oplus \mathbf{h}_j \oplus
            \mathbf{e}_{ij};\ \mathbf{a}_{ij}\right)
            = \mathrm{Gate}\Big(\mathrm{TP}_{m,2}\big(\mathrm{Gate}(\mathrm{TP}_{m,1}(
            \mathbf{h}_i \oplus \mathbf{h}_j \oplus \mathbf{e}_{ij},
            \mathbf{a}_{ij})),\ \mathbf{a}_{ij}\big)\Big)

        \mathbf{m}_i &= \sum_{j \in \mathcal{N}(i)} \mathbf{m}_{ij}

        \mathbf{h}_i' &= \mathbf{h}_i + \phi_f(\mathbf{h}_i \oplus \mathbf{m}_i;\ \mathbf{a}_i)
            = \mathbf{h}_i + \mathrm{TP}_{f,2}\big(\mathrm{Gate}(\mathrm{TP}_{f,1}(
            \mathbf{h}_i \oplus \mathbf{m}_i, \mathbf{a}_i)),\ \mathbf{a}_i\big)

    where every :math:`\mathrm{TP}` is an :class:`~equigraph.nn.steerable.O3TensorProduct`
    conditioned on the steerable edge attributes :math:`\mathbf{a}_{ij}` (spherical
    harmonics of :math:`\mathbf{r}_{ij}`) or node attributes :math:`\mathbf{a}_i` (their
    mean over :math:`\mathcal{N}(i)`), see :class:`~equigraph.nn.steerable.SteerableAttributes`;
    :math:`\mathbf{e}_{ij}` are the additional message features, invariants of the edge
    (SEGNN passes :math:`\|\mathbf{r}_{ij}\|^2` on QM9, ``"1x0e"``, and
    :math:`\|\mathbf{r}_{ij}\|` with the charge product :math:`q_i q_j` on N-body, ``"2x0e"``). The
    residual :math:`\mathbf{h}_i +` needs ``irreps_out == irreps_in``
    (``residual=True``). With ``norm="instance"`` (per graph, SEGNN's QM9 setting) the
    output is normalized by :class:`~equigraph.nn.steerable.InstanceNorm`; with
    ``norm="batch"`` both the messages and the output by
    :class:`~equigraph.nn.steerable.BatchNorm`, as in SEGNN. A node without neighbours
    gets :math:`\mathbf{m}_i = \mathbf{0}`. With ``edge_weight`` :math:`w_{ij}` the sum is
    :math:`\mathbf{m}_i = \sum_j w_{ij}\, \mathbf{m}_{ij}` (e.g. a smooth cutoff envelope
    :math:`u(r_{ij})`, so that messages fade out at the cutoff).

    :meth:`message` computes :math:`\mathbf{m}_{ij}` from ``x_i``, ``x_j``, the edge
    attributes and the additional features; PyG's ``"add"`` aggregation sums it.
    Parameters follow SEGNN's ``SEGNNLayer`` (``message_layer_1``, ..., the flat e3nn weight
    ``tp.weight`` of each), so that its weights load one to one (``biases`` is ``bias``
    here). The layer compiles with :func:`torch.compile` without graph breaks, which is
    several times faster on CPU (``benchmarks/steerable_speed.py``).

    Args:
        irreps_in (irreps): irreps of :math:`\mathbf{h}`.
        irreps_hidden (irreps): irreps of the messages and hidden features (scalars
            first, sorted, e.g. :func:`~equigraph.nn.steerable.WeightBalancedIrreps`).
        irreps_out (irreps): irreps of :math:`\mathbf{h}'`.
        irreps_edge_attr (irreps): irreps of :math:`\mathbf{a}_{ij}`.
        irreps_node_attr (irreps): irreps of :math:`\mathbf{a}_i`.
        additional_message_irreps (irreps, optional): irreps of :math:`\mathbf{e}_{ij}`;
            :obj:`None` for none. (default: :obj:`None`)
        norm (str, optional): :obj:`None`, ``"instance"`` or ``"batch"``.
            (default: :obj:`None`)
        residual (bool, optional): add :math:`\mathbf{h}_i`. (default: :obj:`True`)
        validate (bool, optional): check the shapes and indices of the inputs in every
            call; a model that validates its inputs once per forward builds its layers
            with :obj:`False`. (default: :obj:`True`)
        tp_backend (str, optional): backend of the tensor products, ``"e3nn"`` or
            ``"cueq"`` (see :class:`~equigraph.nn.steerable.O3TensorProduct`).
            (default: ``"e3nn"``)
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing` (aggregation fixed to ``"add"``).

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, \text{irreps\_in.dim})`,
          edge indices :math:`(2, |\mathcal{E}|)` (``[0]`` neighbour :math:`j`, ``[1]``
          centre :math:`i`),
          edge attributes :math:`(|\mathcal{E}|, \text{irreps\_edge\_attr.dim})`,
          node attributes :math:`(|\mathcal{V}|, \text{irreps\_node\_attr.dim})`,
          additional message features :math:`(|\mathcal{E}|, \text{dim})` *(optional)*,
          edge weights :math:`(|\mathcal{E}|)` *(optional)*,
          batch vector :math:`(|\mathcal{V}|)` *(optional, for* ``norm="instance"`` *)*
        - **output:** node features :math:`(|\mathcal{V}|, \text{irreps\_out.dim})`

    Example:
        >>> import torch
        >>> from equigraph.nn import edge_vec
        >>> from equigraph.nn.steerable import SteerableAttributes
        >>> attrs = SteerableAttributes(lmax=1)
        >>> conv = SEGNNConv("4x0e+2x1o", "8x0e+4x1o", "4x0e+2x1o", attrs.irreps_out, attrs.irreps_out,
        ...                  additional_message_irreps="1x0e")
        >>> pos, h = torch.randn(4, 3), torch.randn(4, 10)
        >>> edge_index = torch.tensor([[0, 1, 2, 3], [1, 0, 3, 2]])
        >>> vec = edge_vec(pos, edge_index)
        >>> edge_attr, node_attr = attrs(vec, edge_index, num_nodes=4)
        >>> conv(h, edge_index, edge_attr, node_attr, vec.square().sum(-1, keepdim=True)).shape
        torch.Size([4, 10])
    """

    def __init__(
        self,
        irreps_in,
        irreps_hidden,
        irreps_out,
        irreps_edge_attr,
        irreps_node_attr,
        additional_message_irreps=None,
        norm: Optional[str] = None,
        residual: bool = True,
        validate: bool = True,
        tp_backend: str = "e3nn",
        **kwargs,
    ):
        if kwargs.get("aggr", "add") not in ("add", "sum"):
            raise ValueError(f"aggr: SEGNNConv sums messages over neighbours, got {kwargs['aggr']!r}")
        kwargs["aggr"] = "add"
        if kwargs.get("flow", "source_to_target") != "source_to_target":
            raise ValueError("flow: SEGNNConv follows edge_index[0] = neighbour, edge_index[1] = centre "
                             f"('source_to_target'), got {kwargs['flow']!r}")
        super().__init__(**kwargs)
        self.irreps_in = as_irreps(irreps_in, "irreps_in")
        self.irreps_hidden = as_irreps(irreps_hidden, "irreps_hidden")
        self.irreps_out = as_irreps(irreps_out, "irreps_out")
        self.irreps_edge_attr = as_irreps(irreps_edge_attr, "irreps_edge_attr")
        self.irreps_node_attr = as_irreps(irreps_node_attr, "irreps_node_attr")
        self.additional_message_irreps = (o3.Irreps("") if additional_message_irreps is None else
                                          as_irreps(additional_message_irreps, "additional_message_irreps"))
        for name in ("irreps_in", "irreps_hidden", "irreps_out", "irreps_edge_attr", "irreps_node_attr"):
            if getattr(self, name).dim == 0:
                raise ValueError(f"{name} is empty")
        if norm not in _NORMS:
            raise ValueError(f"norm must be one of {_NORMS}, got {norm!r}")
        if residual and self.irreps_out != self.irreps_in:
            raise ValueError(f"residual=True needs irreps_out == irreps_in, got {self.irreps_out} != {self.irreps_in}")
        self.norm, self.residual, self.validate = norm, bool(residual), bool(validate)
        self.tp_backend = check_tp_backend("tp_backend", tp_backend)
        # Plain ints for the input checks: torch.compile cannot guard on e3nn Irrep objects.
        self._in_dim, self._edge_dim = self.irreps_in.dim, self.irreps_edge_attr.dim
        self._node_dim, self._extra_dim = self.irreps_node_attr.dim, self.additional_message_irreps.dim

        try:  # the messages and hidden features go through gates: name the argument on error
            Gate(self.irreps_hidden)
        except ValueError as err:
            raise ValueError(f"irreps_hidden {self.irreps_hidden} cannot be gated: {err}") from None
        # SEGNN's layout: the message input is (h_i, h_j, e_ij), the update input (h_i, m_i),
        # each simplified, so that weights map one to one.
        message_in = (self.irreps_in + self.irreps_in + self.additional_message_irreps).simplify()
        update_in = (self.irreps_in + self.irreps_hidden).simplify()
        # Sub-layers initialise themselves; only reset_parameters() below draws from the
        # global RNG, so that a layer built after torch.manual_seed(s) equals one reset after it.
        with torch.random.fork_rng(devices=[]):
            backend = self.tp_backend
            self.message_layer_1 = O3TensorProductGate(message_in, self.irreps_hidden, self.irreps_edge_attr,
                                                       backend=backend)
            self.message_layer_2 = O3TensorProductGate(self.irreps_hidden, self.irreps_hidden, self.irreps_edge_attr,
                                                       backend=backend)
            self.update_layer_1 = O3TensorProductGate(update_in, self.irreps_hidden, self.irreps_node_attr,
                                                      backend=backend)
            self.update_layer_2 = O3TensorProduct(self.irreps_hidden, self.irreps_out, self.irreps_node_attr,
                                                  backend=backend)
        self.feature_norm = self.message_norm = None
        if norm == "instance":
            self.feature_norm = InstanceNorm(self.irreps_out)
        elif norm == "batch":
            self.feature_norm = BatchNorm(self.irreps_out)
            self.message_norm = BatchNorm(self.irreps_hidden)
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        for layer in (self.message_layer_1, self.message_layer_2, self.update_layer_1, self.update_layer_2,
                      self.feature_norm, self.message_norm):
            if layer is not None:
                layer.reset_parameters()

    def forward(
        self,
        x: Tensor,
        edge_index: Tensor,
        edge_attr: Tensor,
        node_attr: Tensor,
        additional_message_features: Optional[Tensor] = None,
        batch: Optional[Tensor] = None,
        edge_weight: Optional[Tensor] = None,
    ) -> Tensor:
        if self.validate:
            self._check_inputs(x, edge_index, edge_attr, node_attr, additional_message_features, batch, edge_weight)
        num_nodes = x.size(0)
        msg = self.propagate(edge_index, x=x, edge_attr=edge_attr, extra=additional_message_features,
                             edge_weight=edge_weight, size=(num_nodes, num_nodes))
        out = self.update_layer_1(torch.cat([x, msg], dim=-1), node_attr)
        out = self.update_layer_2(out, node_attr)
        if self.residual:
            out = x + out
        if self.norm == "instance":
            out = self.feature_norm(out, batch)
        elif self.norm == "batch":
            out = self.feature_norm(out)
        return out

    def message(self, x_i: Tensor, x_j: Tensor, edge_attr: Tensor, extra: Optional[Tensor],
                edge_weight: Optional[Tensor]) -> Tensor:
        parts = [x_i, x_j] if extra is None else [x_i, x_j, extra]
        m = self.message_layer_1(torch.cat(parts, dim=-1), edge_attr)
        m = self.message_layer_2(m, edge_attr)
        if self.message_norm is not None:
            m = self.message_norm(m)
        if edge_weight is not None:
            m = m * edge_weight.reshape(-1, 1)
        return m

    def aggregate(self, inputs: Tensor, index: Tensor, ptr: Optional[Tensor] = None,
                  dim_size: Optional[int] = None) -> Tensor:
        return scatter(inputs, index, dim=0, dim_size=dim_size, reduce="sum")

    def _check_inputs(self, x, edge_index, edge_attr, node_attr, extra, batch, edge_weight=None):
        if not isinstance(x, Tensor) or x.dim() != 2 or x.size(-1) != self._in_dim:
            raise ValueError(f"x must have shape [N, {self._in_dim}] (irreps_in {self.irreps_in}), "
                             f"got {list(getattr(x, 'shape', []))}")
        n = x.size(0)
        if n == 0:
            raise ValueError("x is empty: the graph has no nodes")
        if not isinstance(edge_index, Tensor) or edge_index.dim() != 2 or edge_index.size(0) != 2 \
                or edge_index.dtype not in (torch.long, torch.int32):
            raise ValueError(f"edge_index must be an integer tensor of shape [2, E], got "
                             f"{list(getattr(edge_index, 'shape', []))}")
        e = edge_index.size(1)
        if e and values_checked():
            lo, hi = int(edge_index.min()), int(edge_index.max())
            if lo < 0 or hi >= n:
                raise ValueError(f"edge_index refers to node {lo if lo < 0 else hi}, but x has {n} nodes")
        if not isinstance(edge_attr, Tensor) or edge_attr.shape != (e, self._edge_dim):
            raise ValueError(f"edge_attr must have shape [E={e}, {self._edge_dim}] (irreps_edge_attr "
                             f"{self.irreps_edge_attr}), got {list(getattr(edge_attr, 'shape', []))}")
        if not isinstance(node_attr, Tensor) or node_attr.shape != (n, self._node_dim):
            raise ValueError(f"node_attr must have shape [N={n}, {self._node_dim}] (irreps_node_attr "
                             f"{self.irreps_node_attr}), got {list(getattr(node_attr, 'shape', []))}")
        dim = self._extra_dim
        if dim:
            if extra is None:
                raise ValueError("additional_message_features is missing: this SEGNNConv was built with "
                                 f"additional_message_irreps={self.additional_message_irreps}")
            if extra.shape != (e, dim):
                raise ValueError(f"additional_message_features must have shape [E={e}, {dim}] "
                                 f"({self.additional_message_irreps}), got {list(extra.shape)}")
        elif extra is not None:
            raise ValueError("additional_message_features was given but this SEGNNConv was built without "
                             "additional_message_irreps")
        if batch is not None and batch.shape != (n,):
            raise ValueError(f"batch must have shape [N={n}], got {list(batch.shape)}")
        if edge_weight is not None and (not isinstance(edge_weight, Tensor)
                                        or edge_weight.shape not in ((e,), (e, 1))):
            raise ValueError(f"edge_weight must have shape [E={e}], got {list(getattr(edge_weight, 'shape', []))}")

    def __repr__(self) -> str:
        extra = self.additional_message_irreps
        extra = f", additional_message_irreps={extra}" if extra else ""
        norm = f", norm={self.norm!r}" if self.norm else ""
        backend = f", tp_backend={self.tp_backend!r}" if self.tp_backend != "e3nn" else ""
        return (f"{self.__class__.__name__}({self.irreps_in} -> {self.irreps_out}, hidden={self.irreps_hidden}, "
                f"edge_attr={self.irreps_edge_attr}, node_attr={self.irreps_node_attr}{extra}{norm}{backend})")
