"""Input checks shared by every model: one vocabulary, one error style.

Each function reads one kind of input from a PyG ``Data`` / ``Batch``, checks its presence,
shape and dtype, and returns it; values (NaN / inf) are checked for all inputs together by
:func:`check_finite`, with a single device synchronisation. A model calls these once per
forward and then runs its layers with ``validate=False``.

>>> import torch
>>> from torch_geometric.data import Data
>>> positions(Data(pos=torch.zeros(2, 2)))
Traceback (most recent call last):
...
ValueError: data.pos must have shape [N, 3], got [2, 2]
"""
from __future__ import annotations

from typing import Mapping, Optional

import torch
from torch import Tensor

from equigraph.data import keys as K
from equigraph.graph.checks import trusted, values_checked

__all__ = ["positions", "atomic_numbers", "node_features", "node_vectors", "edge_features", "check_finite",
           "trusted", "values_checked"]


def positions(data, dtype: Optional[torch.dtype] = None) -> Tensor:
    """``data.pos`` ``[N, 3]``, floating point (of the model's ``dtype`` when given), with at
    least one node."""
    pos = getattr(data, K.POS, None)
    if pos is None:
        raise ValueError(f"data.{K.POS} is missing")
    if not isinstance(pos, Tensor) or pos.dim() != 2 or pos.size(-1) != 3:
        raise ValueError(f"data.{K.POS} must have shape [N, 3], got {list(getattr(pos, 'shape', []))}")
    if not pos.is_floating_point():
        raise ValueError(f"data.{K.POS} must be a floating-point tensor, got {pos.dtype}")
    if pos.size(0) == 0:
        raise ValueError(f"data.{K.POS} is empty: the data has no nodes")
    if dtype is not None and pos.dtype != dtype:
        raise ValueError(f"data.{K.POS} is {pos.dtype} but the model is {dtype}: convert one of them "
                         f"(model.to({pos.dtype}) or data.{K.POS}.to({dtype}))")
    return pos


def atomic_numbers(data, max_z: int, num_nodes: int) -> Tensor:
    """``data.z`` ``[N]``, integer, every value in ``[0, max_z)``."""
    z = getattr(data, K.Z, None)
    if z is None:
        raise ValueError(f"data.{K.Z} is missing (atomic numbers; or build the model with in_channels to read data.{K.X})")
    if z.dim() != 1 or z.dtype not in (torch.long, torch.int32, torch.int64):
        raise ValueError(f"data.{K.Z} must be a 1-D integer tensor, got {z.dtype} of shape {list(z.shape)}")
    if z.size(0) != num_nodes:
        raise ValueError(f"data.{K.Z} has {z.size(0)} entries but data.{K.POS} has {num_nodes} rows")
    if values_checked() and not bool(((z >= 0) & (z < max_z)).all()):
        raise ValueError(f"data.{K.Z} must lie in [0, max_z={max_z}), got values in [{int(z.min())}, {int(z.max())}]")
    return z


def node_features(data, channels: int, num_nodes: int, key: str = K.X) -> Tensor:
    """``data.x`` as ``[N, channels]`` (a 1-D ``x`` is one channel)."""
    x = getattr(data, key, None)
    if x is None:
        raise ValueError(f"data.{key} is missing: the model was built with in_channels={channels}")
    if x.dim() == 1:
        x = x.unsqueeze(-1)
    if x.dim() != 2 or x.size(-1) != channels or x.size(0) != num_nodes:
        raise ValueError(f"data.{key} must have shape [N={num_nodes}, in_channels={channels}], got {list(x.shape)}")
    return x


def node_vectors(data, key: str, num_nodes: int, why: str = "") -> Tensor:
    """A per-node vector input such as ``data.vel``, ``[N, 3]``."""
    v = getattr(data, key, None)
    if v is None:
        raise ValueError(f"data.{key} is missing" + (f": {why}" if why else ""))
    if v.shape != (num_nodes, 3):
        raise ValueError(f"data.{key} must have shape [N={num_nodes}, 3], got {list(v.shape)}")
    return v


def edge_features(data, dim: int, num_edges: int, key: str = K.EDGE_ATTR) -> Tensor:
    """``data.edge_attr`` ``[E, dim]``, one row per edge of the graph the model runs on."""
    a = getattr(data, key, None)
    if a is None:
        raise ValueError(f"data.{key} is missing: the model was built with edge_dim={dim}")
    if a.dim() == 1:
        a = a.unsqueeze(-1)
    if a.shape != (num_edges, dim):
        raise ValueError(f"data.{key} must have shape [E={num_edges}, edge_dim={dim}], got {list(a.shape)} "
                         "(edge attributes must come with the edge_index they belong to)")
    return a


def check_finite(tensors: Mapping[str, Optional[Tensor]]) -> None:
    """Raise naming the first ``data.<key>`` that holds NaN or inf; one device sync for all.

    Skipped where :func:`values_checked` is false.
    """
    items = {k: v for k, v in tensors.items() if v is not None and v.is_floating_point()}
    if not items or not values_checked():
        return
    if bool(torch.stack([torch.isfinite(v).all() for v in items.values()]).all()):
        return
    bad = next(k for k, v in items.items() if not bool(torch.isfinite(v).all()))
    raise ValueError(f"data.{bad} contains NaN or inf")
