"""What the backbones share: validation of the declared output and reading the inputs."""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor
from e3nn import o3

from equigraph.data import keys as K
from equigraph.symmetry import Output, TypeSpec, parse_type

#: Levels a backbone output can have.
OUT_LEVELS = ("graph", "node")
_THREE = ("vector", "pseudovector", "point")


def resolve_output(out_type, level: str, out_channels: Optional[int], model: str) -> Tuple[TypeSpec, str, int]:
    """``(type, level, channels)`` of a backbone's output ``"y"``; ``ValueError`` naming
    ``model`` for a type/level/width that do not fit together."""
    type_ = parse_type(out_type, "out_type")
    if level not in OUT_LEVELS:
        raise ValueError(f"{model}: level must be one of {OUT_LEVELS}, got {level!r}")
    if type_ in ("cell", "tensor"):
        raise ValueError(f"{model}: out_type {type_!r} is not supported (outputs are [*, C] rows, not 3 x 3)")
    if type_ in _THREE:
        width = 3
    elif isinstance(type_, o3.Irreps):
        width = type_.dim
    else:
        width = None
    if out_channels is not None and (isinstance(out_channels, bool) or not isinstance(out_channels, int)
                                     or out_channels < 1):
        raise ValueError(f"{model}: out_channels must be a positive int or None, got {out_channels!r}")
    if width is not None and out_channels is not None and out_channels != width:
        raise ValueError(f"{model}: an output declared {type_!s} has {width} channels, got out_channels={out_channels}")
    return type_, level, width or out_channels or 1


def positive_int(value, name: str, model: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{model}: {name} must be a positive int, got {value!r}")
    return value


def declare(type_: TypeSpec, level: str, key: str = K.Y) -> dict:
    """``{key: Output(type_, level)}``."""
    return {key: Output(type_, level)}


def read_points(data, in_channels: int, model: str) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """``(pos, batch, x)`` of ``data``, checked: ``pos`` a finite ``[N, 3]`` float tensor,
    ``x`` ``[N, in_channels]`` (or :obj:`None` when ``in_channels == 0``)."""
    pos = getattr(data, K.POS, None)
    if not isinstance(pos, Tensor) or pos.dim() != 2 or pos.size(-1) != 3 or not pos.is_floating_point():
        what = list(pos.shape) if isinstance(pos, Tensor) else type(pos).__name__
        raise ValueError(f"{model}: data.{K.POS} must be a float [N, 3] tensor, got {what}")
    if pos.size(0) == 0:
        raise ValueError(f"{model}: data.{K.POS} is empty")
    if not torch.compiler.is_compiling() and not bool(torch.isfinite(pos).all()):
        raise ValueError(f"{model}: data.{K.POS} contains NaN or inf")
    batch = getattr(data, K.BATCH, None)
    if batch is None:
        batch = torch.zeros(pos.size(0), dtype=torch.long, device=pos.device)
    x = None
    if in_channels:
        x = getattr(data, K.X, None)
        if x is None:
            raise ValueError(f"{model}: data.{K.X} is missing (built with in_channels={in_channels})")
        if x.dim() == 1:
            x = x.unsqueeze(-1)
        if x.shape != (pos.size(0), in_channels):
            raise ValueError(f"{model}: data.{K.X} must have shape [N={pos.size(0)}, in_channels={in_channels}], "
                             f"got {list(x.shape)}")
        x = x.to(pos.dtype)
    return pos, batch, x


def num_graphs(data, batch: Tensor) -> int:
    n = getattr(data, "num_graphs", None)
    if isinstance(n, int):
        return n
    return int(batch.max()) + 1 if batch.numel() else 0

