r"""The two halves of frame (and group) averaging, shared by
:class:`~equigraph.models.FrameAveraging` and :class:`~equigraph.models.GroupAveraging`:

1. :func:`canonicalize`: ``F`` copies of the batch in one ``Batch``, copy ``f`` of graph
   ``g`` moved by :math:`g_{f}^{-1}` (positions, velocities, ... by their types);
2. :func:`average_outputs`: each output of the backbone on that batch moved back by
   :math:`g_{f}` and averaged over the copies,

.. math::
    \langle \Phi \rangle(X) = \frac{1}{|\mathcal{F}(X)|} \sum_{g \in \mathcal{F}(X)}
    g \cdot \Phi(g^{-1} \cdot X).

Every value is placed with a *level*: ``"node"`` (rows follow ``batch``), ``"graph"`` (one
row per graph) or ``"edge"`` (rows follow the centre ``edge_index[1]``).
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Tuple

import torch
from torch import Tensor

from equigraph.data import keys as K
from equigraph.symmetry import TypeSpec

from .batching import num_graphs_of, replicate
from .pca import Frames
from .transform import check_value_shape, frame_transform

__all__ = ["canonicalize", "average_outputs", "row_graphs", "input_level", "LEVELS"]

LEVELS = ("graph", "node", "edge")

#: ``{key: (type, level)}``; a level of :obj:`None` is inferred (:func:`input_level`).
Declarations = Mapping[str, Tuple[TypeSpec, Optional[str]]]


def _batch(data, n: int, device) -> Tensor:
    batch = getattr(data, K.BATCH, None)
    return batch if batch is not None else torch.zeros(n, dtype=torch.long, device=device)


def _num_edges(data) -> Optional[int]:
    edge_index = getattr(data, K.EDGE_INDEX, None)
    return edge_index.size(1) if isinstance(edge_index, Tensor) else None


def row_graphs(data, level: str, num_graphs: int, device) -> Tensor:
    """Graph index of each row of a ``level`` value of ``data``."""
    n = data.num_nodes
    batch = _batch(data, n, device)
    if level == "node":
        return batch
    if level == "graph":
        return torch.arange(num_graphs, device=device)
    edge_index = getattr(data, K.EDGE_INDEX, None)
    if edge_index is None:
        raise ValueError(f"edge-level values need data.{K.EDGE_INDEX}, which is missing")
    return batch[edge_index[1]]


def input_level(data, key: str, value: Tensor, level: Optional[str], num_graphs: int) -> str:
    """The level of input ``data[key]``: ``level`` when given (checked against its rows),
    else ``"graph"`` for graph keys (``cell``, ...), ``"node"`` for ``N`` rows, ``"edge"``
    for ``E`` rows."""
    n, e = data.num_nodes, _num_edges(data)
    rows = value.size(0) if value.dim() else None
    expected = {"node": n, "graph": num_graphs, "edge": e}
    if level is None:
        if key in K.GRAPH_KEYS:
            level = "graph"
        elif rows == n and not (rows == e and (key in K.EDGE_KEYS or "edge" in key)):
            level = "node"
        elif rows is not None and rows == e:
            level = "edge"
        elif rows == num_graphs:
            level = "graph"
        else:
            raise ValueError(f"input {key!r} has {rows} rows, which matches neither the {n} nodes, the "
                             f"{num_graphs} graphs nor the {e} edges")
    elif level not in LEVELS:
        raise ValueError(f"input {key!r}: level must be one of {LEVELS}, got {level!r}")
    if rows != expected[level]:
        raise ValueError(f"input {key!r} is {level}-level, so it needs {expected[level]} rows, but has shape "
                         f"{list(value.shape)}")
    return level


def canonicalize(data, frames: Frames, in_types: Declarations, num_graphs: Optional[int] = None):
    r"""``F`` copies of ``data`` in one ``Batch`` (:func:`~equigraph.nn.frames.replicate`),
    the inputs named in ``in_types`` of copy ``f`` moved by the inverse of frame element
    ``f`` of their graph (``"point"``: ``(x - t) @ R``; ``"vector"``: ``x @ R``, ...).

    Args:
        data (Data or Batch): the input.
        frames (Frames): ``rotations`` ``[G, F, 3, 3]``, ``translations`` ``[G, 3]`` or
            :obj:`None`.
        in_types (dict): ``{key: (type, level or None)}``; other attributes are copied as
            they are.
        num_graphs (int, optional): ``G``. (default: from ``data``)

    Returns:
        Batch: ``F * G`` graphs, copy-major (graph ``f * G + g``, node ``f * N + n``).
    """
    G = num_graphs_of(data) if num_graphs is None else num_graphs
    F = frames.rotations.size(1)
    if frames.rotations.size(0) != G:
        raise ValueError(f"frames have {frames.rotations.size(0)} rows but the data has {G} graphs")
    device = frames.rotations.device
    values = {}
    for key, (type_, level) in in_types.items():
        value = getattr(data, key, None)
        if not isinstance(value, Tensor) or not value.is_floating_point():
            raise ValueError(f"input {key!r} must be a floating-point tensor attribute of the data, got "
                             f"{type(value).__name__ if not isinstance(value, Tensor) else value.dtype}")
        level = input_level(data, key, value, level, G)
        check_value_shape(value, type_, key, "input")
        rows = row_graphs(data, level, G, device)
        t = frames.translations[rows] if frames.translations is not None else None
        copies = value.unsqueeze(1).expand(value.size(0), F, *value.shape[1:])
        moved = frame_transform(copies, type_, frames.rotations[rows], t, inverse=True, name=key)
        values[key] = moved.transpose(0, 1).reshape(F * value.size(0), *value.shape[1:]).to(value.dtype)
    return replicate(data, F, G, values=values)


def average_outputs(outputs: Mapping[str, Tensor], frames: Frames, declarations: Declarations, data,
                    num_graphs: Optional[int] = None) -> Dict[str, Tensor]:
    r"""Move each output of the backbone on :func:`canonicalize`'s batch back by its frame
    element and average over the ``F`` copies.

    Args:
        outputs (dict): ``{key: tensor}`` with ``F * M`` rows, copy-major.
        frames (Frames): the frames :func:`canonicalize` used.
        declarations (dict): ``{key: (type, level)}`` of every output.
        data (Data or Batch): the original input (for ``batch``, ``edge_index``).
        num_graphs (int, optional): ``G``. (default: from ``data``)

    Returns:
        dict: ``{key: tensor}`` with ``M`` rows (nodes, graphs or edges of ``data``).

    Raises:
        ValueError: for an output without a declaration, a non-floating output, one whose
            rows are not ``F`` times its level's count, or a shape that does not fit its type.
    """
    G = num_graphs_of(data) if num_graphs is None else num_graphs
    F = frames.rotations.size(1)
    device = frames.rotations.device
    counts = {"node": data.num_nodes, "graph": G, "edge": _num_edges(data)}
    averaged = {}
    for key, value in outputs.items():
        if key not in declarations:
            raise ValueError(f"the backbone returned {key!r}, which has no declared type: declare it, e.g. "
                             f"outputs={{{key!r}: 'scalar'}}")
        type_, level = declarations[key]
        if not isinstance(value, Tensor) or not value.is_floating_point():
            what = value.dtype if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(f"output {key!r} must be a floating-point tensor to be averaged, got {what}")
        m = counts[level]
        if m is None:
            raise ValueError(f"output {key!r} is declared edge-level but the data has no {K.EDGE_INDEX}: "
                             "edges a backbone builds itself differ between copies")
        if value.dim() == 0 or value.size(0) != F * m:
            rows = value.size(0) if value.dim() else "no"
            raise ValueError(f"output {key!r} is declared {level}-level, so it needs {F} x {m} rows (frame copies "
                             f"x {level}s), but has {rows}; declare its level, e.g. Output(type, 'node')")
        check_value_shape(value, type_, key)
        per_row = value.reshape(F, m, *value.shape[1:]).transpose(0, 1)
        rows = row_graphs(data, level, G, device)
        t = frames.translations[rows] if frames.translations is not None else None
        moved = frame_transform(per_row, type_, frames.rotations[rows], t, name=key)
        averaged[key] = moved.mean(dim=1)
    return averaged
