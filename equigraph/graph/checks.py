"""Input validation shared by every graph builder (and reusable by layers and models).

Each check raises a :class:`ValueError` that names the offending argument, so a bad input
fails at the call that received it instead of surfacing later as a NaN or a wrong graph.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from numbers import Integral, Real
from typing import Iterator

import torch
from torch import Tensor

_trusted = False


@contextmanager
def trusted() -> Iterator[None]:
    """Skip the checks of input *values* (NaN / inf, index ranges) inside the block.

    Each such check reads a device value on the host, a synchronisation that stalls a GPU
    step. The trainer enters this block when the data was checked once for the whole split
    (:func:`equigraph.train.device_loader.check_records`); shapes, dtypes and presence are
    still checked on every call, since they cost no synchronisation.
    """
    global _trusted
    before, _trusted = _trusted, True
    try:
        yield
    finally:
        _trusted = before


def values_checked() -> bool:
    """Whether checks of input values run: not inside :func:`trusted` nor while
    ``torch.compile`` traces (a data-dependent branch would break the graph)."""
    return not _trusted and not torch.compiler.is_compiling()


def check_pos(pos, name: str = "pos") -> Tensor:
    """Check that ``pos`` is a finite floating-point ``[N, 3]`` tensor and return it.

    ``N = 0`` is allowed (every builder then returns an empty graph).

    >>> check_pos(torch.zeros(2, 3)).shape
    torch.Size([2, 3])
    """
    if not isinstance(pos, Tensor):
        raise ValueError(f"`{name}` must be a torch.Tensor of shape [N, 3], got {type(pos).__name__}")
    if pos.dim() != 2 or pos.size(1) != 3:
        raise ValueError(f"`{name}` must have shape [N, 3], got {list(pos.shape)}")
    if not pos.is_floating_point():
        raise ValueError(f"`{name}` must be a floating-point tensor, got dtype {pos.dtype}")
    if not values_checked():
        # reading the data synchronises the device (and would break a traced graph)
        return pos
    bad = ~torch.isfinite(pos).all(dim=1)
    if bool(bad.any()):
        idx = bad.nonzero().flatten()[:5].tolist()
        raise ValueError(f"`{name}` contains NaN or inf (first bad node(s): {idx})")
    return pos


def check_batch(batch, num_nodes: int, name: str = "batch", device=None) -> Tensor:
    """Validate a ``[N]`` graph-assignment vector and return it as ``int64``.

    ``None`` means a single graph (all zeros). The vector may be in any order and may skip
    graph indices (an empty graph in a batch); it must be 1-D, integer, of length
    ``num_nodes`` and non-negative.

    Args:
        batch (torch.Tensor, optional): graph index of each node.
        num_nodes (int): the number of nodes ``N`` it must describe.
        name (str, optional): argument name used in error messages. (default: ``"batch"``)
        device (torch.device, optional): device of the zeros made for ``batch=None``.

    >>> check_batch(None, 3)
    tensor([0, 0, 0])
    >>> check_batch(torch.tensor([1, 0, 1]), 3)
    tensor([1, 0, 1])
    """
    if batch is None:
        return torch.zeros(num_nodes, dtype=torch.long, device=device)
    if not isinstance(batch, Tensor):
        raise ValueError(f"`{name}` must be a torch.Tensor of shape [N], got {type(batch).__name__}")
    if batch.dim() != 1:
        raise ValueError(f"`{name}` must be 1-D of shape [N], got {list(batch.shape)}")
    if batch.is_floating_point() or batch.is_complex() or batch.dtype == torch.bool:
        raise ValueError(f"`{name}` must be an integer tensor, got dtype {batch.dtype}")
    if batch.numel() != num_nodes:
        raise ValueError(f"`{name}` has length {batch.numel()} but there are {num_nodes} nodes")
    if batch.numel() > 0 and int(batch.min()) < 0:
        raise ValueError(f"`{name}` must be non-negative, got minimum {int(batch.min())}")
    return batch.long()


def _check_real(x, name: str, allow_zero: bool) -> float:
    if isinstance(x, Tensor):
        if x.numel() != 1:
            raise ValueError(f"`{name}` must be a scalar, got shape {list(x.shape)}")
        x = x.item()
    if isinstance(x, bool) or not isinstance(x, Real):
        raise ValueError(f"`{name}` must be a real number, got {type(x).__name__}")
    x = float(x)
    if not math.isfinite(x) or x < 0 or (x == 0 and not allow_zero):
        raise ValueError(f"`{name}` must be finite and {'>=' if allow_zero else '>'} 0, got {x}")
    return x


def check_cutoff(r, name: str = "r") -> float:
    """Return the cutoff as a float after checking it is finite and positive.

    >>> check_cutoff(5)
    5.0
    """
    return _check_real(r, name, allow_zero=False)


def check_min_distance(d, name: str = "min_distance") -> float:
    """Return the coincidence tolerance as a float after checking it is finite and ``>= 0``
    (``0`` disables the check).

    >>> check_min_distance(1e-4)
    0.0001
    """
    return _check_real(d, name, allow_zero=True)


def check_positive_int(k, name: str, allow_none: bool = False):
    """Return ``k`` as an ``int`` after checking it is an integer ``>= 1`` (or ``None``).

    >>> check_positive_int(4, "k")
    4
    """
    if k is None and allow_none:
        return None
    if isinstance(k, Tensor) and k.numel() == 1 and not k.is_floating_point():
        k = k.item()
    if isinstance(k, bool) or not isinstance(k, Integral):
        raise ValueError(f"`{name}` must be a positive integer, got {k!r}")
    if k <= 0:
        raise ValueError(f"`{name}` must be a positive integer, got {k}")
    return int(k)


def check_cell_pbc(cell, pbc, num_graphs: int, dtype: torch.dtype, device) -> tuple[Tensor, Tensor]:
    """Broadcast ``cell`` (``[3, 3]`` or ``[G, 3, 3]``) and ``pbc`` (``[3]`` or ``[G, 3]``)
    to ``[G, 3, 3]`` and ``[G, 3]`` bool, where ``G`` covers every graph index in the batch.

    Only shapes and finiteness are checked here; singular cells along periodic directions
    are caught by :func:`equigraph.graph.cell.complete_basis`.
    """
    if not isinstance(pbc, Tensor):
        pbc = torch.as_tensor(pbc)
    if pbc.dtype != torch.bool:
        if pbc.is_floating_point() or not bool(((pbc == 0) | (pbc == 1)).all()):
            raise ValueError(f"`pbc` must be boolean (or 0/1), got {pbc.tolist()}")
        pbc = pbc.bool()
    if pbc.dim() == 1:
        pbc = pbc.unsqueeze(0)
    if pbc.dim() != 2 or pbc.size(1) != 3:
        raise ValueError(f"`pbc` must have shape [3] or [G, 3], got {list(pbc.shape)}")
    if cell is None:
        if bool(pbc.any()):
            raise ValueError("`cell` is required when any `pbc` is True")
        cell = torch.zeros(1, 3, 3, dtype=dtype, device=device)
    if not isinstance(cell, Tensor):
        cell = torch.as_tensor(cell, dtype=dtype)
    if cell.dim() == 2:
        cell = cell.unsqueeze(0)
    if cell.dim() != 3 or cell.shape[1:] != (3, 3):
        raise ValueError(f"`cell` must have shape [3, 3] or [G, 3, 3], got {list(cell.shape)}")
    if not cell.is_floating_point():
        cell = cell.to(dtype)
    if not bool(torch.isfinite(cell).all()):
        raise ValueError("`cell` contains NaN or inf")
    g = max(cell.size(0), pbc.size(0))
    if cell.size(0) not in (1, g) or pbc.size(0) not in (1, g):
        raise ValueError(f"`cell` ({cell.size(0)} graphs) and `pbc` ({pbc.size(0)} graphs) disagree")
    if g == 1:
        g = max(num_graphs, 1)
    elif num_graphs > g:
        raise ValueError(f"`batch` refers to {num_graphs} graphs but `cell`/`pbc` describe {g}")
    cell = cell.to(device=device, dtype=dtype).expand(g, 3, 3)
    pbc = pbc.to(device).expand(g, 3)
    return cell, pbc
