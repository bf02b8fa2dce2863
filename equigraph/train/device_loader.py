"""Batches gathered on the training device from a split collated once (``data.loader: device``).

PyG's ``DataLoader`` collates every batch on the host from Python ``Data`` objects and then
copies it to the device: on a GPU that host work, not the model, bounds a QM9 step (issue
12: 2,586 molecules/s). The whole QM9 data set is about 68 MB, so :class:`DeviceBatches`
collates each split once, keeps it on the device, and forms each batch by ``index_select``
there. Per batch the host only computes the row indices of the chosen graphs (vectorised,
from the collation's slice tables) and sends them in one copy; nothing on the device waits
for the host and the host never waits for the device.

The split is checked once when it is collated (:func:`check_records`: NaN / inf, edge
indices outside their graph, atomic numbers outside the model's embedding), naming the
record, so the training step can run with :func:`equigraph.models.inputs.trusted` and
skip the per-batch checks that would each synchronise the device.

Optionally the model's interaction graph is built once per split (``graph=``): for models
that build their graph from the input positions (every :class:`~equigraph.models.contract.EquigraphModel`
does so once per forward) this is the same graph, without a neighbour search per step.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch import Tensor
from torch_geometric.data import Batch

from equigraph.data import keys as K
from equigraph.models.contract import edges_beyond, supplied_edge_error
from equigraph.nn.geometry import edge_vec_unchecked
from equigraph.train.padding import BucketPadding

__all__ = ["DeviceBatches", "check_records"]


#: String attributes that name a record in error messages, when a data set carries them.
_NAME_KEYS = ("name", "smiles")


def _record_name(store: Batch, g: int) -> str:
    for key in _NAME_KEYS:
        names = getattr(store, key, None)
        if isinstance(names, (list, tuple)) and g < len(names):
            return f"record {g} ({names[g]})"
    return f"record {g}"


def _graph_of_rows(slices: Tensor, rows: Tensor) -> Tensor:
    return torch.searchsorted(slices.to(rows.device), rows, right=True) - 1


def _deterministic(transform) -> bool:
    """A transform that declares ``deterministic = True`` (equigraph's featurisers), or a
    ``Compose`` of such; anything else may be random augmentation."""
    parts = getattr(transform, "transforms", None)
    if parts is not None:
        return all(_deterministic(t) for t in parts)
    return bool(getattr(transform, "deterministic", False))


def check_records(store: Batch, split: str = "train", max_z: Optional[int] = None,
                  max_edge_length: Optional[float] = None) -> None:
    """Check a collated split once: every floating-point tensor finite, every edge inside its
    own graph, atomic numbers in ``[0, max_z)``, edges no longer than ``max_edge_length`` Å
    (the model's :attr:`~equigraph.models.contract.EquigraphModel.supplied_edge_limit`).
    Raise ``ValueError`` naming the split, the key and the first bad record."""
    slices = store._slice_dict
    for key in store.keys():
        value = store[key]
        if not isinstance(value, Tensor) or key not in slices:
            continue
        dim = store.__cat_dim__(key, value)
        dim = dim + value.dim() if dim < 0 else dim
        bad = None
        if value.is_floating_point():
            ok = torch.isfinite(value)
            if not bool(ok.all()):
                bad = ok.movedim(dim, 0).reshape(value.size(dim), -1).all(-1).logical_not().nonzero()[0, 0]
                problem = "contains NaN or inf"
        elif key == K.EDGE_INDEX and value.numel():
            graph = _graph_of_rows(slices[key], torch.arange(value.size(1), device=value.device))
            nodes = slices[K.POS] if K.POS in slices else None
            if nodes is not None:
                nodes = nodes.to(value.device)
                inside = (value >= nodes[graph]) & (value < nodes[graph + 1])
                if not bool(inside.all()):
                    bad = inside.all(0).logical_not().nonzero()[0, 0]
                    problem = "has an edge to a node outside its graph"
        elif key == K.Z and max_z is not None and value.numel():
            ok = (value >= 0) & (value < max_z)
            if not bool(ok.all()):
                bad = ok.logical_not().nonzero()[0, 0]
                problem = f"has an atomic number outside [0, max_z={max_z}) of the model"
        if bad is not None:
            g = int(_graph_of_rows(slices[key], bad.reshape(1).cpu())[0])
            raise ValueError(f"data.{key} of the {split} split, {_record_name(store, g)}: {problem}")
    edge_index = getattr(store, K.EDGE_INDEX, None)
    if max_edge_length is not None and edge_index is not None and edge_index.numel():
        shift = getattr(store, K.SHIFT, None)
        cell = getattr(store, K.CELL, None) if shift is not None else None
        length = edge_vec_unchecked(store[K.POS], edge_index, shift, cell, store[K.BATCH]).norm(dim=-1)
        too_long = edges_beyond(length, max_edge_length)
        if bool(too_long.any()):
            bad = too_long.nonzero()[0, 0]
            g = int(_graph_of_rows(slices[K.EDGE_INDEX], bad.reshape(1).cpu())[0])
            raise ValueError(f"data.{K.EDGE_INDEX} of the {split} split, {_record_name(store, g)}: "
                             f"{supplied_edge_error(float(length[bad]), max_edge_length)}")


class DeviceBatches:
    """An iterable of PyG ``Batch`` es gathered on ``device`` from one collated split.

    Iterating it yields the split in batches of ``batch_size`` graphs, reshuffled each epoch
    when ``shuffle`` exactly as PyG's ``DataLoader`` would (its ``RandomSampler`` draw from
    the global generator, so a seeded run sees the same batches). Under DDP each of the
    ``world_size`` processes takes every ``world_size``-th graph of the shared permutation,
    padded by repetition to equal length as :class:`torch.utils.data.DistributedSampler`
    does.

    Args:
        dataset (Sequence[Data]): the split; a per-access ``transform`` is applied once per
            record, so it must declare ``deterministic = True`` (equigraph's featurisers do),
            else it is refused as possible random augmentation.
        batch_size (int): graphs per batch.
        shuffle (bool): reshuffle every epoch (default: :obj:`False`).
        device (torch.device or str): where the split lives (default: ``"cpu"``).
        seed (int): seed of the shuffle under DDP, with the epoch number (default: ``0``).
        rank (int), world_size (int): this process's rank and the number of processes
            (default: ``0`` and ``1``).
        split (str): the split's name, for error messages (default: ``"train"``).
        max_z (int, optional): checked bound of ``data.z`` (the model's embedding size).
        max_edge_length (float, optional): checked bound of the edge lengths in Å (the model's
            ``supplied_edge_limit``: steps with trusted inputs skip the model's own check).
        graph (callable, optional): ``graph(batch) -> (edge_index, shift)`` run once per split
            (in chunks of ``graph_chunk`` graphs) when the data carries no ``edge_index``.
        pad (BucketPadding, optional): pad every batch to bucket sizes with ``batch_size + 1``
            graphs (static shapes for ``torch.compile`` and CUDA graphs); needs edges in the
            data or from ``graph``, and every tensor one row per node, edge or graph.

    >>> import torch
    >>> from torch_geometric.data import Data
    >>> graphs = [Data(pos=torch.randn(n, 3), y=torch.tensor([[float(n)]])) for n in (2, 3, 4)]
    >>> batches = DeviceBatches(graphs, batch_size=2)
    >>> [b.y.flatten().tolist() for b in batches]
    [[2.0, 3.0], [4.0]]
    >>> [int(b.num_graphs) for b in batches], len(batches)
    ([2, 1], 2)
    """

    def __init__(self, dataset: Sequence, batch_size: int, shuffle: bool = False,
                 device: torch.device | str = "cpu", seed: int = 0, rank: int = 0, world_size: int = 1,
                 split: str = "train", max_z: Optional[int] = None, max_edge_length: Optional[float] = None,
                 graph: Optional[Callable] = None, graph_chunk: int = 1024,
                 pad: Optional[BucketPadding] = None):
        if batch_size < 1:
            raise ValueError(f"batch_size: must be positive, got {batch_size}")
        if len(dataset) == 0:
            raise ValueError(f"data.loader=device: the {split} split is empty")
        if getattr(dataset[0], K.POS, None) is None:
            raise ValueError(f"data.loader=device: the {split} split has no data.{K.POS} (node positions)")
        transform = getattr(dataset, "transform", None)
        if transform is not None and not _deterministic(transform):
            raise ValueError(f"data.loader=device: the {split} split applies a per-access transform ({transform!r}), "
                             "which a split collated once would apply only once; use data.loader=pyg")
        self.batch_size, self.shuffle, self.seed = int(batch_size), bool(shuffle), int(seed)
        self.rank, self.world_size, self.split = int(rank), int(world_size), split
        self.device = torch.device(device)
        self.epoch = 0
        graphs = [dataset[i] for i in range(len(dataset))]
        if graph is not None and getattr(graphs[0], K.EDGE_INDEX, None) is None:
            graphs = self._with_graphs(graphs, graph, graph_chunk)
        store = Batch.from_data_list(graphs)
        check_records(store, split, max_z, max_edge_length)
        self.num_graphs = len(graphs)
        self._tensors: dict[str, Tensor] = {}
        self._lists: dict[str, list] = {}
        self._dims: dict[str, int] = {}
        self._group: dict[str, int] = {}      # key -> index of its slice table in self._slices
        self._slices: list[Tensor] = []       # distinct slice tables (host, int64 [G + 1])
        self._incs: dict[str, Tensor] = {}    # key -> per-graph increment (host), edge_index-like keys
        for key in store.keys():
            if key in (K.BATCH, "ptr"):
                continue
            value = store[key]
            sl = store._slice_dict[key].cpu()
            if not isinstance(value, Tensor):
                self._lists[key] = list(value)
                continue
            for i, known in enumerate(self._slices):
                if known is sl or torch.equal(known, sl):
                    self._group[key] = i
                    break
            else:
                self._group[key] = len(self._slices)
                self._slices.append(sl)
            dim = store.__cat_dim__(key, value)
            self._dims[key] = dim + value.dim() if dim < 0 else dim
            inc = store._inc_dict.get(key)
            if isinstance(inc, Tensor) and bool((inc != 0).any()):
                self._incs[key] = inc.cpu()
            self._tensors[key] = value.to(self.device)
        self._nodes = store._slice_dict[K.POS].cpu().diff()
        self.pad = pad
        if pad is not None:
            self._check_paddable()

    def _check_paddable(self) -> None:
        if K.EDGE_INDEX not in self._tensors:
            raise ValueError(f"data.pad_buckets: the {self.split} split has no data.{K.EDGE_INDEX}, and the model builds "
                             "its graph inside its forward (graph_from_input_positions is not set), so its edge count "
                             "cannot be padded")
        per_graph = torch.arange(self.num_graphs + 1)
        levels = {self._group[K.POS]: "node", self._group[K.EDGE_INDEX]: "edge"}
        for i, sl in enumerate(self._slices):
            if i not in levels and torch.equal(sl, per_graph):
                levels[i] = "graph"
        self._pad_level: dict[str, str] = {}
        for key, group in self._group.items():
            if key in K.GRAPH_KEYS and torch.equal(self._slices[group], per_graph):
                # Also when every graph has one atom, so that nodes and graphs share slices.
                self._pad_level[key] = "graph"
            elif group in levels:
                self._pad_level[key] = levels[group]
            else:
                raise ValueError(f"data.pad_buckets: data.{key} of the {self.split} split has neither one row per node, "
                                 "per edge nor per graph, so it cannot be padded")

    @staticmethod
    def _with_graphs(graphs: list, graph: Callable, chunk: int) -> list:
        out = []
        for start in range(0, len(graphs), chunk):
            part = graphs[start:start + chunk]
            batch = Batch.from_data_list(part)
            with torch.no_grad():
                edge_index, shift = graph(batch)
            edge_graph = batch[K.BATCH][edge_index[1]]
            order = torch.argsort(edge_graph, stable=True)
            edge_index, edge_graph = edge_index[:, order], edge_graph[order]
            shift = shift[order] if shift is not None else None
            counts = torch.bincount(edge_graph, minlength=len(part)).tolist()
            offsets = batch.ptr[:-1].tolist()
            for d, ei, off, sh in zip(part, edge_index.split(counts, dim=1), offsets,
                                      shift.split(counts) if shift is not None else [None] * len(part)):
                d = d.clone()
                d[K.EDGE_INDEX] = ei - off
                if sh is not None:
                    d[K.SHIFT] = sh
                out.append(d)
        return out

    def __len__(self) -> int:
        per_rank = -(-self.num_graphs // self.world_size)
        return -(-per_rank // self.batch_size)

    def _order(self) -> Tensor:
        if self.shuffle and self.world_size == 1:
            # RandomSampler's seed for its permutation, from the global generator.
            seed = int(torch.empty((), dtype=torch.int64).random_().item())
            order = torch.randperm(self.num_graphs, generator=torch.Generator().manual_seed(seed))
        elif self.shuffle:
            # DistributedSampler's draw: every process permutes alike from seed + epoch.
            gen = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.num_graphs, generator=gen)
        else:
            order = torch.arange(self.num_graphs)
        if self.world_size > 1:
            total = -(-self.num_graphs // self.world_size) * self.world_size
            order = torch.cat([order, order[: total - self.num_graphs]])[self.rank::self.world_size]
        return order

    def __iter__(self):
        # torch's DataLoader draws a base seed for its workers from the global generator on
        # every iteration (and RandomSampler one more, see _order): drawn alike, a seeded run
        # sees the same batches in the same order as with PyG's DataLoader.
        torch.empty((), dtype=torch.int64).random_()
        order = self._order()
        self.epoch += 1
        for start in range(0, order.numel(), self.batch_size):
            yield self.gather(order[start:start + self.batch_size])

    def gather(self, graphs: Tensor) -> Batch:
        """The batch of the graphs with these indices (host ``LongTensor``), in this order."""
        graphs = graphs.cpu()
        host: list[Tensor] = []
        counts = []
        for sl in self._slices:
            start, count = sl[graphs], sl[graphs + 1] - sl[graphs]
            offsets = torch.cumsum(count, 0) - count
            rows = torch.arange(int(count.sum())) + torch.repeat_interleave(start - offsets, count)
            host.append(rows)
            counts.append(count)
        nodes = self._nodes[graphs]
        new_node_offsets = torch.cumsum(nodes, 0) - nodes
        deltas = {}
        for key, inc in self._incs.items():
            count = counts[self._group[key]]
            deltas[key] = torch.repeat_interleave(new_node_offsets - inc[graphs], count)
            host.append(deltas[key])
        batch_vec = torch.repeat_interleave(torch.arange(graphs.numel()), nodes)
        plan, real_nodes = None, int(nodes.sum())
        if self.pad is not None:
            plan = self.pad.plan(real_nodes, int(counts[self._group[K.EDGE_INDEX]].sum()), graphs.numel(),
                                 self.batch_size)
            batch_vec = torch.cat([batch_vec, plan["graph_of_node"]])
            nodes = torch.cat([nodes, torch.bincount(plan["graph_of_node"] - graphs.numel())])
            host.append(plan["edge_index"].reshape(-1))
        ptr = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(nodes, 0)])
        host.append(batch_vec)
        host.append(ptr)
        sizes = [t.numel() for t in host]
        flat = torch.cat(host)
        if self.device.type == "cuda":
            flat = flat.pin_memory().to(self.device, non_blocking=True)
        else:
            flat = flat.to(self.device)
        parts = list(flat.split(sizes))
        rows = parts[: len(self._slices)]
        delta_parts = dict(zip(deltas, parts[len(self._slices): len(self._slices) + len(deltas)]))
        batch_vec, ptr_dev = parts[-2], parts[-1]
        pad_edges = parts[-3] if plan is not None else None
        out = Batch()
        for key, value in self._tensors.items():
            v = value.index_select(self._dims[key], rows[self._group[key]])
            if key in delta_parts:
                shape = [1] * v.dim()
                shape[self._dims[key]] = -1
                v = v + delta_parts[key].view(shape)
            if plan is not None:
                v = self._padded(key, v, plan, pad_edges)
            out[key] = v
        idx = graphs.tolist()
        for key, values in self._lists.items():
            out[key] = [values[i] for i in idx]
        out[K.BATCH] = batch_vec
        out["ptr"] = ptr_dev
        out._num_graphs = graphs.numel() if plan is None else plan["graphs"]
        if plan is not None:
            out[K.REAL_GRAPHS] = graphs.numel()
            out[K.REAL_NODES] = real_nodes
        return out

    def _padded(self, key: str, value: Tensor, plan: dict, pad_edges: Tensor) -> Tensor:
        """``value`` with the rows of the padding nodes, edges or graphs appended."""
        dim, level = self._dims[key], self._pad_level[key]
        count = plan[{"node": "nodes", "edge": "edges", "graph": "graphs"}[level]] - value.size(dim)
        shape = list(value.shape)
        shape[dim] = count
        if key == K.EDGE_INDEX:
            extra = pad_edges.view(2, count)
        elif key == K.POS:
            extra = self.pad.positions(count, value)
        elif key == K.CELL and level == "graph":
            # A unit cell: finite volume (stress divides by it); the padding has no periodic edges.
            extra = torch.eye(3, dtype=value.dtype, device=value.device).expand(shape)
        elif level != "edge" and not value.is_floating_point() and value.dtype != torch.bool and value.size(dim):
            # Integer node or graph values (atomic numbers): the batch's first one, valid for the model.
            extra = value.narrow(dim, 0, 1).expand(shape)
        else:
            extra = value.new_zeros(shape)
        return torch.cat([value, extra], dim=dim)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.split}: {self.num_graphs} graphs, batch_size={self.batch_size}, "
                f"device={self.device})")
