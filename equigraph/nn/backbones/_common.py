"""What the backbones share: validation of the declared output and the widths, reading the
inputs, and the pooled readout of the PointNet-style networks."""
from __future__ import annotations

from typing import Dict, Optional, Tuple

import torch
from torch import Tensor
from e3nn import o3
from torch_geometric.nn import MLP, global_max_pool

from equigraph.data import keys as K
from equigraph.graph.checks import values_checked
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


def int_at_least(value, minimum: int, name: str, model: str) -> int:
    """``value`` if it is an int (not a bool) ``>= minimum``, else a ``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{model}: {name} must be {what}, got {value!r}")
    return value


def check_widths(in_channels, hidden_channels, global_channels, num_layers, model: str) -> Tuple[int, int, int, int]:
    """``(in_channels, hidden_channels, global_channels, num_layers)`` of a point-cloud
    backbone, checked in that order: ``in_channels >= 0``, the others positive."""
    return (int_at_least(in_channels, 0, "in_channels", model),
            int_at_least(hidden_channels, 1, "hidden_channels", model),
            int_at_least(global_channels, 1, "global_channels", model),
            int_at_least(num_layers, 1, "num_layers", model))


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
    if values_checked() and not bool(torch.isfinite(pos).all()):
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



class PooledBackbone(torch.nn.Module):
    """Base of the PointNet-style backbones: per-point features of width ``local_width``
    are lifted by ``self.lift`` and max-pooled into one feature per cloud, and ``self.head``
    maps the cloud feature (``level="graph"``) or each point's features concatenated with
    its cloud's (``level="node"``) to ``"y"``. Subclasses set ``out_type``, ``level``,
    ``out_channels``, ``hidden_channels`` and ``global_channels``, call
    :meth:`build_readout`, and list their other trained modules in :meth:`encoders`."""

    def build_readout(self, local_width: int, act, norm) -> None:
        self.lift = MLP([local_width, self.global_channels], act=act, norm=norm, plain_last=False)
        head_in = self.global_channels + (local_width if self.level == "node" else 0)
        self.head = MLP([head_in, self.hidden_channels, self.out_channels], act=act, norm=norm)

    def encoders(self):
        """The modules before the readout, reset in this order before ``lift`` and ``head``."""
        return (self.local,)

    def reset_parameters(self):
        for module in self.encoders():
            module.reset_parameters()
        self.lift.reset_parameters()
        self.head.reset_parameters()

    @property
    def outputs(self):
        """``{"y": Output(out_type, level)}``."""
        return declare(self.out_type, self.level)

    def pool(self, local: Tensor, batch: Tensor, data) -> Tensor:
        """``[G, global_channels]``: the max over each cloud of ``lift(local)``."""
        return global_max_pool(self.lift(local), batch, size=num_graphs(data, batch))

    def predict(self, local: Tensor, batch: Tensor, data) -> Dict[str, Tensor]:
        """``{"y": head(g)}`` per cloud, or ``head([local_i, g])`` per point."""
        g = self.pool(local, batch, data)
        if self.level == "node":
            return {K.Y: self.head(torch.cat([local, g[batch]], dim=-1))}
        return {K.Y: self.head(g)}
