"""The Tensor Field Network (TFN) as a whole model on PyG data."""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, Union

import torch
from e3nn import o3
from torch import Tensor
from torch.nn import Embedding, ModuleList
from torch.nn.utils import skip_init

from equigraph.data import keys as K
from equigraph.nn.conv.tfn import TFNConv
from equigraph.nn.cutoff import PolynomialCutoff
from equigraph.nn.geometry import DEFAULT_EPS, check_edge_vec_inputs, edge_vec_unchecked
from equigraph.nn.radial import BesselBasis
from equigraph.nn.steerable import Gate, as_irreps, check_edge_lengths, check_tp_backend

from . import inputs
from .contract import EquigraphModel, Output, resolve_interaction_graph
from .readout import Readout
from .registry import register_model
from .segnn import check_keys, check_positive_int, node_scalars, node_vector_inputs, num_graphs_of

__all__ = ["TFN"]


class _NoEnvelope(torch.nn.Module):
    """The constant envelope 1: messages are not faded out (graphs without a cutoff)."""

    def forward(self, r: Tensor) -> Tensor:
        return torch.ones_like(r)


@register_model("tfn")
class TFN(EquigraphModel):
    r"""The Tensor Field Network from the `"Tensor field networks: Rotation- and
    translation-equivariant neural networks for 3D point clouds"
    <https://arxiv.org/abs/1802.08219>`_ paper (Thomas et al., 2018): ``num_layers``
    :class:`~equigraph.nn.conv.TFNConv` convolutions (radial MLP on a Bessel basis times
    a smooth cutoff, spherical harmonics up to ``lmax``, self-interaction), each followed
    by a gated nonlinearity (:class:`~equigraph.nn.steerable.Gate`) to ``hidden_irreps``,
    an invariant :class:`~equigraph.models.readout.Readout` of the even scalars, and
    optionally a ``1o`` output for positions.

    .. math::
        \mathbf{f}^{l+1} = \mathrm{Gate}\big(\mathrm{TFNConv}_l(\mathbf{f}^l)\big), \qquad
        \mathbf{y} = \mathrm{Readout}\big(\mathbf{f}^L_{0e}\big), \qquad
        \mathbf{x}'_i = \mathbf{x}_i + \mathrm{TFNConv}_\mathrm{out}(\mathbf{f}^L)_i

    The node input :math:`\mathbf{f}^0` is an embedding of ``data.z`` (as many even scalars
    as ``hidden_irreps`` has) or the ``in_channels`` scalars of ``data.x``, then one scalar
    per ``scalar_inputs`` key and one ``1o`` vector per ``vector_inputs`` key (``"pos"``
    there is the position relative to the centroid of its graph).

    The radial functions live on :math:`[0, r_c]`, ``radial_cutoff`` (default: the cutoff
    of the radius interaction graph). With ``envelope=True`` they are multiplied by
    :class:`~equigraph.nn.PolynomialCutoff` (:math:`p = 6`) of :math:`r_c`, so that the
    energy and its first two derivatives are continuous when a neighbour crosses the
    cutoff, and edges of ``data.edge_index`` longer than :math:`r_c` count for nothing.
    A graph without a cutoff (full, kNN) needs ``radial_cutoff`` and gets no envelope.
    A node without neighbours receives no messages (its self-interaction remains), so a
    graph with one atom has a defined, finite output; a zero-length edge raises a
    ``ValueError`` naming it unless ``allow_zero_length``.

    N-body (the EGNN paper's TFN row, ``configs/nbody_tfn.yaml``): ``TFN(in_channels=1,
    scalar_inputs=["charges"], vector_inputs=["vel"], positions=True,
    interaction_graph="full", radial_cutoff=...)`` on ``x`` = speed.

    Args:
        hidden_irreps (str, optional): irreps after every gate, sorted, scalars first.
            (default: :obj:`"32x0e+16x1o+8x2e"`)
        num_layers (int, optional): number of convolutions. (default: :obj:`3`)
        lmax (int, optional): highest order of the filters' harmonics. (default: :obj:`2`)
        out_channels (int, optional): width of the invariant ``"y"``; :obj:`None` builds
            no readout. (default: :obj:`None`)
        in_channels (int, optional): width of ``data.x`` (scalars); :obj:`None` embeds
            ``data.z``. (default: :obj:`None`)
        max_z (int, optional): rows of the ``data.z`` embedding and of ``atom_ref``.
            (default: :obj:`100`)
        scalar_inputs (list of str, optional): per-node scalar data keys. (default: :obj:`()`)
        vector_inputs (list of str, optional): per-node vector data keys, as ``1o``.
            (default: :obj:`()`)
        num_basis (int, optional): Bessel functions of the radial basis. (default: :obj:`8`)
        radial_hidden (int, optional): hidden width of the radial MLPs. (default: :obj:`64`)
        radial_cutoff (float, optional): :math:`r_c`. (default: the graph's cutoff)
        avg_num_neighbors (float, optional): messages are divided by its square root.
            (default: :obj:`None`)
        reduce (str, optional): readout pooling, :obj:`"sum"`, :obj:`"mean"` or
            :obj:`None` (per node). (default: :obj:`"sum"`)
        graph_mlp (bool, optional): MLP after pooling. (default: :obj:`False`)
        positions (bool, optional): return ``"pos"`` = input position + a ``1o`` output.
            (default: :obj:`False`)
        act (str or Callable, optional): activation of the radial MLPs and the readout.
            (default: :obj:`"silu"`)
        interaction_graph (optional): see :class:`~equigraph.models.EGNN`.
            (default: :obj:`RadiusInteractionGraph(5.0)`)
        envelope (bool, optional): see above. (default: :obj:`True`)
        atom_ref (bool, optional): per-element reference table in the readout (energies).
            (default: :obj:`False`)
        allow_zero_length (bool, optional): accept zero-length edges (their direction-less
            part only). (default: :obj:`False`)
        tp_backend (str, optional): what computes the tensor products, ``"e3nn"`` or
            ``"cueq"`` (NVIDIA cuEquivariance, optional: ``pip install
            cuequivariance-torch``). The same function of the same parameters.
            (default: ``"e3nn"``)

    Shapes:
        - **input:** a :class:`~torch_geometric.data.Data` / ``Batch`` with ``pos``
          :math:`(N, 3)`, ``z`` :math:`(N)` or ``x`` :math:`(N, F_{in})`, the named scalar
          :math:`(N)` and vector :math:`(N, 3)` inputs, optionally ``edge_index``
          :math:`(2, E)`, ``shift`` :math:`(E, 3)`, ``cell`` :math:`(G, 3, 3)`, ``batch``
          :math:`(N)`
        - **output:** a dict with ``"h"`` :math:`(N, \text{hidden.dim})`, ``"y"``
          :math:`(G \text{ or } N, F_{out})` and ``"node_y"`` with ``out_channels``,
          ``"pos"`` :math:`(N, 3)` and ``"vec"`` :math:`(N, 1, 3)` with ``positions``

    Example:
        >>> import torch
        >>> from torch_geometric.data import Data
        >>> model = TFN("8x0e+4x1o", num_layers=2, lmax=1, out_channels=1, interaction_graph=3.0)
        >>> data = Data(z=torch.tensor([8, 1, 1]), pos=torch.tensor([[0.0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]))
        >>> out = model(data)
        >>> out["y"].shape, out["h"].shape
        (torch.Size([1, 1]), torch.Size([3, 20]))
    """

    graph_from_input_positions = True

    def __init__(
        self,
        hidden_irreps: str = "32x0e+16x1o+8x2e",
        num_layers: int = 3,
        lmax: int = 2,
        out_channels: Optional[int] = None,
        in_channels: Optional[int] = None,
        max_z: int = 100,
        scalar_inputs: Sequence[str] = (),
        vector_inputs: Sequence[str] = (),
        num_basis: int = 8,
        radial_hidden: int = 64,
        radial_cutoff: Optional[float] = None,
        avg_num_neighbors: Optional[float] = None,
        reduce: Optional[str] = "sum",
        graph_mlp: bool = False,
        positions: bool = False,
        act: Union[str, Callable] = "silu",
        interaction_graph: Any = None,
        envelope: bool = True,
        atom_ref: bool = False,
        allow_zero_length: bool = False,
        tp_backend: str = "e3nn",
    ):
        super().__init__()
        self.tp_backend = check_tp_backend("tp_backend", tp_backend)
        check_positive_int("num_layers", num_layers)
        check_positive_int("lmax", lmax, 0)
        check_positive_int("max_z", max_z)
        check_positive_int("num_basis", num_basis)
        check_positive_int("radial_hidden", radial_hidden)
        if out_channels is not None:
            check_positive_int("out_channels", out_channels)
        if in_channels is not None:
            check_positive_int("in_channels", in_channels)
        if atom_ref and (out_channels is None or reduce is None):
            raise ValueError("atom_ref=True needs a graph readout (out_channels and reduce='sum' or 'mean')")
        self.hidden_irreps = as_irreps(hidden_irreps, "hidden_irreps")
        if self.hidden_irreps.dim == 0:
            raise ValueError("hidden_irreps is empty")
        try:
            Gate(self.hidden_irreps)
        except ValueError as err:
            raise ValueError(f"hidden_irreps: {err}") from None
        even = [(mul, s) for (mul, ir), s in zip(self.hidden_irreps, self.hidden_irreps.slices())
                if ir == o3.Irrep("0e")]
        if not even:
            raise ValueError(f"hidden_irreps {self.hidden_irreps} has no even scalars (0e) for the embedding and "
                             "readout")
        self._scalar_slice = (even[0][1].start, even[0][1].stop)
        self.scalar_inputs = check_keys("scalar_inputs", scalar_inputs)
        self.vector_inputs = check_keys("vector_inputs", vector_inputs)
        self.interaction_graph = resolve_interaction_graph(interaction_graph)
        graph_cutoff = self.cutoff
        if radial_cutoff is None:
            if graph_cutoff is None:
                raise ValueError(f"radial_cutoff is needed: the interaction graph {self.interaction_graph} has no "
                                 "cutoff")
            radial_cutoff = graph_cutoff
        if not isinstance(radial_cutoff, (int, float)) or isinstance(radial_cutoff, bool) or not radial_cutoff > 0:
            raise ValueError(f"radial_cutoff must be a number > 0, got {radial_cutoff!r}")
        self.radial_cutoff = float(radial_cutoff)
        self.use_envelope = bool(envelope) and graph_cutoff is not None
        self.num_layers, self.lmax, self.max_z = num_layers, lmax, max_z
        self.allow_zero_length = bool(allow_zero_length)
        self.in_channels, self.out_channels, self.positions = in_channels, out_channels, bool(positions)

        n0 = even[0][0]
        scalars = in_channels if in_channels is not None else n0
        self.irreps_input = (o3.Irreps(f"{scalars + len(self.scalar_inputs)}x0e")
                             + o3.Irreps(f"{len(self.vector_inputs)}x1o")).remove_zero_multiplicities()

        def conv(irreps_in, irreps_out, what):
            irreps_out = o3.Irreps(irreps_out)
            try:
                return TFNConv(irreps_in, irreps_out, lmax=lmax, cutoff=self.radial_cutoff,
                               radial_basis=BesselBasis(num_basis, self.radial_cutoff),
                               cutoff_fn=PolynomialCutoff(self.radial_cutoff) if self.use_envelope else _NoEnvelope(),
                               radial_hidden=(radial_hidden,), act=act, avg_num_neighbors=avg_num_neighbors,
                               self_interaction=any(ir in {i for _, i in irreps_in} for _, ir in irreps_out),
                               allow_zero_length=allow_zero_length, validate=False, tp_backend=self.tp_backend)
            except ValueError as err:
                raise ValueError(f"{what}: {err}") from None

        # Sub-layers initialise themselves on construction; fork_rng keeps those draws off the
        # global generator, so that reset_parameters below makes every draw.
        with torch.random.fork_rng(devices=[]):
            self.embedding = skip_init(Embedding, max_z, n0) if in_channels is None else None
            self.convs, self.gates = ModuleList(), ModuleList()
            irreps = self.irreps_input
            for k in range(num_layers):
                gate = Gate(self.hidden_irreps)
                self.convs.append(conv(irreps, gate.irreps_in, f"hidden_irreps (layer {k})"))
                self.gates.append(gate)
                irreps = self.hidden_irreps
            self.output_conv = conv(self.hidden_irreps, "1x1o", "positions") if positions else None
            self.readout = None
            if out_channels is not None:
                self.readout = Readout(n0, out_channels, reduce=reduce, graph_mlp=graph_mlp, act=act,
                                       max_z=max_z if atom_ref else None)
        self.reset_parameters()

    def reset_parameters(self):
        # Every submodule is initialised here only, in a fixed order, so that a model built
        # after torch.manual_seed(s) equals one reset after torch.manual_seed(s).
        if self.embedding is not None:
            self.embedding.reset_parameters()
        for conv in self.convs:
            conv.reset_parameters()
        for layer in (self.output_conv, self.readout):
            if layer is not None:
                layer.reset_parameters()

    @property
    def outputs(self) -> Dict[str, Output]:
        out = {K.H: Output(str(self.hidden_irreps), "node")}
        out.update(self.readout_outputs())
        if self.positions:
            out[K.POS] = Output("point", "node")
            out[K.VEC] = Output("vector", "node")
        return out

    def forward(self, data) -> Dict[str, Tensor]:
        dtype = self.convs[0].radial[0].weight.dtype
        pos = inputs.positions(data, dtype)
        n = pos.size(0)
        batch = getattr(data, K.BATCH, None)
        num_graphs = num_graphs_of(data, batch)
        z = x = None
        if self.in_channels is None:
            z = inputs.atomic_numbers(data, self.max_z, n)
            features = [self.embedding(z)]
        else:
            x = inputs.node_features(data, self.in_channels, n).to(dtype)
            features = [x]
        if self.readout is not None and self.readout.atom_ref is not None and z is None:
            z = inputs.atomic_numbers(data, self.readout.max_z, n)
        scalars = [node_scalars(data, key, n, dtype) for key in self.scalar_inputs]
        vectors = node_vector_inputs(data, self.vector_inputs, pos, batch, num_graphs)
        edge_index, shift, cell = self.graph(data)
        # Inputs are validated here, once per forward (the convolutions are built with
        # validate=False).
        check_edge_vec_inputs(pos, edge_index, shift, cell, batch)
        if not self.allow_zero_length:
            check_edge_lengths(edge_vec_unchecked(pos, edge_index, shift, cell, batch), edge_index, DEFAULT_EPS)
        inputs.check_finite({K.X: x, **dict(zip(self.scalar_inputs, scalars)),
                             **{k: getattr(data, k) for k in self.vector_inputs if k != K.POS}})
        h = torch.cat(features + scalars + vectors, dim=-1)
        for conv, gate in zip(self.convs, self.gates):
            h = gate(conv(h, pos, edge_index, shift=shift, cell=cell, batch=batch))
        out = {K.H: h}
        if self.readout is not None:
            start, stop = self._scalar_slice
            out.update(self.apply_readout(h[:, start:stop], batch, num_graphs, z))
        if self.output_conv is not None:
            disp = self.output_conv(h, pos, edge_index, shift=shift, cell=cell, batch=batch)
            out[K.POS] = pos + disp
            out[K.VEC] = disp.unsqueeze(1)
        return out

    def __repr__(self) -> str:
        node_in = f"in_channels={self.in_channels}" if self.in_channels is not None else f"max_z={self.max_z}"
        return (f"{self.__class__.__name__}(hidden_irreps={self.hidden_irreps}, num_layers={self.num_layers}, "
                f"lmax={self.lmax}, out_channels={self.out_channels}, {node_in}, positions={self.positions}, "
                f"radial_cutoff={self.radial_cutoff:g}, interaction_graph={self.interaction_graph}, "
                f"envelope={self.use_envelope}"
                + (f", tp_backend={self.tp_backend!r})" if self.tp_backend != "e3nn" else ")"))
