"""Replicate a PyG ``Data`` / ``Batch`` into one bigger ``Batch`` of copies, with tensor
operations only (no Python loop over graphs), so that a backbone runs once on every frame
element of every graph.
"""
from __future__ import annotations

from typing import Mapping, Optional

import torch
from torch import Tensor
from torch_geometric.data import Batch, Data
from torch_geometric.data.data import BaseData

from equigraph.data import keys as K

__all__ = ["replicate", "num_graphs_of"]

_SKIP = (K.BATCH, "ptr")


def num_graphs_of(data) -> int:
    """Number of graphs of ``data``: ``num_graphs`` of a ``Batch``, ``batch.max() + 1`` of a
    ``Data`` that carries a ``batch`` vector, else 1."""
    if isinstance(data, Batch):
        return int(data.num_graphs)
    batch = getattr(data, K.BATCH, None)
    if isinstance(batch, Tensor) and batch.numel():
        return int(batch.max()) + 1
    return 1


def _repeat(value: Tensor, copies: int, dim: int, inc) -> Tensor:
    reps = [1] * value.dim()
    reps[dim] = copies
    out = value.repeat(*reps)
    if isinstance(inc, Tensor) or inc != 0:
        size = value.size(dim)
        offsets = torch.arange(copies, device=value.device, dtype=value.dtype) * inc
        shape = [1] * value.dim()
        shape[dim] = copies * size
        out = out + offsets.repeat_interleave(size).view(shape)
    return out


def replicate(data, copies: int, num_graphs: Optional[int] = None,
              values: Optional[Mapping[str, Tensor]] = None) -> Batch:
    r"""``copies`` copies of ``data`` as one ``Batch`` of ``copies * G`` graphs, copy-major:
    node ``n`` of copy ``f`` is node ``f * N + n``, graph ``g`` of copy ``f`` is graph
    ``f * G + g``.

    Every tensor attribute is concatenated ``copies`` times along its PyG concatenation
    dimension (``__cat_dim__``) and incremented like PyG batching (``__inc__``: node
    indices such as ``edge_index`` by ``N`` per copy, ``*batch`` vectors by ``G``), so
    node-, edge- and graph-level attributes all stay consistent. ``batch``, ``ptr`` and the
    bookkeeping of :meth:`~torch_geometric.data.Batch.to_data_list` are rebuilt;
    non-tensor attributes are kept (per-graph lists of a ``Batch`` are repeated).

    Args:
        data (Data or Batch): the graph(s) to replicate.
        copies (int): number of copies ``F``.
        num_graphs (int, optional): ``G``. (default: :func:`num_graphs_of`)
        values (dict, optional): ``{key: tensor}`` already replicated (e.g. canonicalised
            positions), used as they are for those keys; each must have ``copies`` times the
            original size along its concatenation dimension. (default: :obj:`None`)

    Example:
        >>> data = Data(pos=torch.randn(3, 3), edge_index=torch.tensor([[0, 1], [1, 2]]))
        >>> out = replicate(data, 2)
        >>> out.num_graphs, out.edge_index.tolist(), out.batch.tolist()
        (2, [[0, 1, 3, 4], [1, 2, 4, 5]], [0, 0, 0, 1, 1, 1])
    """
    if not isinstance(data, BaseData) or not isinstance(data, Data):
        raise ValueError(f"`data` must be a torch_geometric Data or Batch, got {type(data).__name__}")
    if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
        raise ValueError(f"`copies` must be a positive int, got {copies!r}")
    is_batch = isinstance(data, Batch)
    G = num_graphs_of(data) if num_graphs is None else int(num_graphs)
    n = data.num_nodes
    if n is None:
        raise ValueError("`data` has no nodes: set `pos` (or `num_nodes`)")
    batch = getattr(data, K.BATCH, None)
    device = next((v.device for v in data.values() if isinstance(v, Tensor)), torch.device("cpu"))
    if batch is None:
        batch = torch.zeros(n, dtype=torch.long, device=device)

    unknown = sorted(set(values or {}) - set(data.keys()))
    if unknown:
        raise ValueError(f"`values` names {unknown}, which `data` does not have")
    out = Batch(_base_cls=data.__class__.__bases__[-1] if is_batch else data.__class__)
    source_slices = getattr(data, "_slice_dict", None) if is_batch else None
    source_incs = getattr(data, "_inc_dict", None) if is_batch else None
    # to_data_list() needs per-graph bookkeeping; it is rebuilt when the input has it (a Batch
    # made by from_data_list) or for a single-graph Data.
    bookkeeping = source_slices is not None or (not is_batch and G == 1)
    slices, incs = {}, {}
    steps = torch.arange(copies)
    for key, value in data.items():
        if key in _SKIP:
            continue
        if key == "num_nodes":
            out.num_nodes = copies * n
            continue
        if not isinstance(value, Tensor):
            per_graph = is_batch and isinstance(value, list) and len(value) == G
            out[key] = value * copies if per_graph else value
            if per_graph and bookkeeping and isinstance(source_slices.get(key), Tensor):
                slices[key] = torch.arange(copies * G + 1)
                incs[key] = None
            continue
        if value.is_sparse or value.layout != torch.strided:
            raise ValueError(f"`data.{key}`: replicating non-strided (sparse) tensors is not supported")
        value = value.as_subclass(Tensor)  # PyG's EdgeIndex/Index: plain indices once offset
        if is_batch and key.endswith("_ptr") and value.dim() == 1 and value.numel() == G + 1:
            # follow_batch pointers: offsets of a per-graph attribute, rebuilt like `ptr`
            steps_d = torch.arange(copies, device=value.device, dtype=value.dtype).unsqueeze(1)
            out[key] = torch.cat([(value[:-1].unsqueeze(0) + steps_d * value[-1]).flatten(), value[-1:] * copies])
            continue
        cat_dim = data.__cat_dim__(key, value)
        # follow_batch vectors (`x_batch`) count graphs: G per copy, even when the last
        # graphs have no rows of that attribute (PyG's __inc__ would say max + 1)
        inc = G if is_batch and key.endswith("_batch") else data.__inc__(key, value)
        if cat_dim is None or value.dim() == 0:
            if not is_batch:
                value = value.unsqueeze(0)
            cat_dim = 0
        cat_dim = cat_dim % value.dim()
        if values is not None and key in values:
            given = values[key]
            if given.dim() != value.dim() or given.size(cat_dim) != copies * value.size(cat_dim):
                raise ValueError(f"`values[{key!r}]` has shape {list(given.shape)}, expected {copies} x "
                                 f"{list(value.shape)} along dimension {cat_dim}")
            out[key] = given
        else:
            out[key] = _repeat(value, copies, cat_dim, inc)
        if not bookkeeping:
            continue
        inc_t = torch.as_tensor(inc).cpu()
        if not is_batch:
            slices[key] = torch.arange(copies + 1) * value.size(cat_dim)
            incs[key] = steps * inc_t
            continue
        s = source_slices.get(key)
        if not isinstance(s, Tensor):  # attributes added after batching are not split by to_data_list
            continue
        s = s.cpu()
        slices[key] = torch.cat([(s[:-1].unsqueeze(0) + steps.unsqueeze(1) * s[-1]).flatten(), s[-1:] * copies])
        base_inc = source_incs.get(key) if source_incs is not None else None
        if isinstance(base_inc, Tensor):
            base_inc = base_inc.cpu()
            shape = (-1,) + (1,) * base_inc.dim()
            incs[key] = (base_inc.unsqueeze(0) + steps.view(shape) * inc_t).flatten(0, 1)
        else:
            incs[key] = base_inc
    store_counts = getattr(data._store, "_num_nodes", None)
    if isinstance(store_counts, list):
        out._store._num_nodes = store_counts * copies

    frame = torch.arange(copies, device=device)
    out.batch = (frame.unsqueeze(1) * G + batch.unsqueeze(0)).flatten()
    ptr = getattr(data, "ptr", None)
    if isinstance(ptr, Tensor):
        out.ptr = torch.cat([(ptr[:-1].unsqueeze(0) + frame.unsqueeze(1) * n).flatten(), ptr[-1:] * copies])
    elif G == 1:
        out.ptr = torch.arange(copies + 1, device=device) * n
    out._num_graphs = copies * G
    if bookkeeping:
        out._slice_dict = slices
        out._inc_dict = incs
    return out
