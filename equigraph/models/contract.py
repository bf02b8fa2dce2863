"""The model contract every equigraph model implements.

A model is a :class:`torch.nn.Module` whose ``forward(data)`` takes a PyG ``Data`` /
``Batch`` and returns a ``dict[str, Tensor]``. It *declares* what it returns,
:attr:`EquigraphModel.outputs`: for each key an :class:`Output` with its equivariance type
(:mod:`equigraph.symmetry`) and its level (one row per graph, node or edge). Wrappers
(:class:`~equigraph.models.ForceField`, frame averaging), the trainer and
:func:`equigraph.testing.assert_equivariant` read the declaration instead of guessing from
names.

A model validates its inputs once per forward with the public checks of
:mod:`equigraph.models.inputs`, and builds its graph through :meth:`EquigraphModel.graph`
(``data.edge_index`` when present, else its ``interaction_graph``).
"""
from __future__ import annotations

from typing import Dict, NamedTuple, Optional

import torch
from torch import Tensor

from equigraph.data import keys as K
from equigraph.graph import RadiusInteractionGraph
from equigraph.symmetry import LEVELS, Output

from . import inputs

__all__ = ["Output", "Graph", "EquigraphModel", "LEVELS", "resolve_interaction_graph", "declared_outputs",
           "check_supplied_edges", "edges_beyond", "supplied_edge_error"]

class Graph(NamedTuple):
    """The graph a model runs on: ``edge_index`` ``[2, E]``, and for periodic data the
    integer image offsets ``shift`` ``[E, 3]`` and the cells ``[G, 3, 3]`` (else
    :obj:`None`)."""

    edge_index: Tensor
    shift: Optional[Tensor] = None
    cell: Optional[Tensor] = None


#: Default cutoff of radius interaction graphs, Å.
DEFAULT_CUTOFF = 5.0


def resolve_interaction_graph(spec):
    """An interaction-graph object from a config value: :obj:`None` (a 5 Å radius graph), a
    radius cutoff in Å, ``"full"``, ``{"name": "radius" | "full" | "knn", ...}`` or an
    object with ``from_data(data)``.

    >>> resolve_interaction_graph(4.0)
    RadiusInteractionGraph(cutoff=4.0, max_num_neighbors=None, min_distance=0.0001)
    """
    from equigraph.graph.interaction import INTERACTION_GRAPHS

    if spec is None:
        return RadiusInteractionGraph(DEFAULT_CUTOFF)
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        return RadiusInteractionGraph(float(spec))
    if isinstance(spec, (str, dict)):
        try:
            return INTERACTION_GRAPHS.build(spec)
        except ValueError as err:
            raise ValueError(f"interaction_graph: {err}") from None
    if callable(spec) and hasattr(spec, "from_data"):
        return spec
    raise ValueError("interaction_graph must be an object with from_data(data), a radius cutoff in Å, "
                     f"'full', or a spec {{name: radius|full|knn, ...}}; got {spec!r}")


class EquigraphModel(torch.nn.Module):
    """Base class of equigraph models: declared outputs, one graph-building path.

    Subclasses implement :attr:`outputs` and ``forward(data) -> dict``, and set
    ``self.interaction_graph`` (see :func:`resolve_interaction_graph`).
    """

    #: True when ``forward`` builds its graph once, with :meth:`graph`, from the input
    #: positions: a loader may then build ``data.edge_index`` once per data set instead
    #: (``data.loader: device``), which gives the same graph without a search per step.
    graph_from_input_positions: bool = False

    @property
    def outputs(self) -> Dict[str, Output]:
        """``{key: Output}`` for every key ``forward`` returns."""
        raise NotImplementedError(f"{type(self).__name__} must declare its outputs")

    @property
    def cutoff(self) -> Optional[float]:
        """The radius of the interaction graph in Å, or :obj:`None` when it has none."""
        return getattr(self._modules.get("interaction_graph"), "cutoff", None)

    @property
    def supplied_edge_limit(self) -> Optional[float]:
        """The longest edge of ``data.edge_index`` this model accepts, in Å (its envelope's
        cutoff, beyond which it would weight a message by zero), or :obj:`None` for any
        length. The forward checks it (:func:`check_supplied_edges`) unless values are
        trusted; the device loader then checks each split once instead."""
        return None

    def graph(self, data) -> Graph:
        """``data.edge_index`` (with ``data.shift`` and ``data.cell``) when the data carries
        edges, else the edges of ``self.interaction_graph.from_data(data)``.

        A ``shift`` without a ``cell`` is an error; the cell is dropped for non-periodic
        edges, which need none.
        """
        edge_index = getattr(data, K.EDGE_INDEX, None)
        if edge_index is not None:
            shift = getattr(data, K.SHIFT, None)
        else:
            builder = self._modules.get("interaction_graph")
            if builder is None:
                raise ValueError(f"data.{K.EDGE_INDEX} is missing and {type(self).__name__} has no interaction_graph")
            edge_index, shift = builder.from_data(data)
        cell = getattr(data, K.CELL, None)
        if shift is None:
            cell = None
        elif cell is None:
            raise ValueError(f"data.{K.SHIFT} is given without data.{K.CELL}")
        return Graph(edge_index, shift, cell)

    def normalizer(self, key: str):
        """The :class:`~equigraph.models.readout.Readout` whose ``scale``, ``shift`` and
        ``atom_ref`` buffers set the physical units of output ``key``, or :obj:`None`: by
        default ``self.readout`` (when set) for ``"y"``."""
        return getattr(self, "readout", None) if key == K.Y else None

    def readout_outputs(self) -> Dict[str, Output]:
        """The declarations of what :meth:`apply_readout` returns: ``"y"`` (per graph, or per
        node without pooling) and ``"node_y"`` when the readout sums per-node
        contributions; empty when ``self.readout`` is :obj:`None` or missing."""
        readout = getattr(self, "readout", None)
        if readout is None:
            return {}
        out = {K.Y: Output("scalar", "node" if readout.reduce is None else "graph")}
        if readout.has_node_contributions:
            out[K.NODE_Y] = Output("scalar", "node")
        return out

    def apply_readout(self, h: Tensor, batch: Optional[Tensor], num_graphs: Optional[int],
                      z: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """``{"y": ...}`` of ``self.readout`` (a :class:`~equigraph.models.readout.Readout`)
        on the invariant node features ``h``, with the per-node contributions ``"node_y"``
        when the readout pools and has them."""
        y, nodes = self.readout(h, batch, num_graphs, z=z, return_nodes=True)
        out = {K.Y: y}
        if nodes is not None and self.readout.reduce is not None:
            out[K.NODE_Y] = nodes
        return out


def check_supplied_edges(data, length: Tensor, cutoff: float) -> None:
    """Edges that the data brings (``data.edge_index``) must be shorter than the ``cutoff``
    of the model's envelope, which would otherwise weight them by zero without a word: a
    ``ValueError`` naming the longest. Edges the model builds itself are within it by
    construction. A value check: skipped where
    :func:`equigraph.models.inputs.values_checked` is false."""
    if getattr(data, K.EDGE_INDEX, None) is None or length.numel() == 0 or not inputs.values_checked():
        return
    if bool(edges_beyond(length.detach(), cutoff).any()):
        raise ValueError(f"data.{K.EDGE_INDEX} {supplied_edge_error(float(length.detach().max()), cutoff)}")


def edges_beyond(length: Tensor, limit: float) -> Tensor:
    """Mask of the edge lengths beyond ``limit``, the rule of :func:`check_supplied_edges`
    (and of the device loader's once-per-split check), with a relative slack of ``1e-5``:
    an edge that the float64 cutoff rule kept (d < r) can round to r in float32."""
    return length > limit * (1.0 + 1e-5)


def supplied_edge_error(longest: float, cutoff: float) -> str:
    """The end of the error about a supplied edge beyond ``cutoff`` (one wording for the
    model's check and the loader's once-per-split check)."""
    return (f"has an edge of length {longest:.4g} Å, beyond the model's cutoff {cutoff:g} Å, where its envelope "
            "weights messages by zero: build the model with a larger interaction_graph cutoff, "
            "interaction_graph='full' or envelope=False")


def declared_outputs(module) -> Optional[Dict[str, Output]]:
    """``module.outputs`` when ``module`` declares its outputs (:class:`EquigraphModel`
    or any module with an ``outputs`` mapping of :class:`Output`), else :obj:`None`."""
    outputs = getattr(module, "outputs", None)
    if isinstance(outputs, dict) and all(isinstance(o, Output) for o in outputs.values()):
        return outputs
    return None

