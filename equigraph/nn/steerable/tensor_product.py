"""Attribute-conditioned O(3) tensor-product layers (SEGNN's ``O3TensorProduct``)."""
from __future__ import annotations

import math
from typing import Dict, List, Optional

import torch
from e3nn import o3
from torch import Tensor

from ._precision import ExactConstants, constant_masters, float64_default, restore_constants
from .cueq import CueqTensorProduct, check_tp_backend
from .gate import Gate
from .irreps import as_irreps

__all__ = ["O3TensorProduct", "O3TensorProductGate"]


def _paths(irreps_in: o3.Irreps, irreps_attr: o3.Irreps, irreps_out: o3.Irreps) -> List[tuple]:
    # Every Clebsch-Gordan path, fully connected ("uvw"), in the order of e3nn's
    # FullyConnectedTensorProduct, so that its flat weight vector has the same layout.
    return [(i1, i2, i3, "uvw", True)
            for i1, (_, ir1) in enumerate(irreps_in)
            for i2, (_, ir2) in enumerate(irreps_attr)
            for i3, (_, ir3) in enumerate(irreps_out)
            if ir3 in ir1 * ir2]


def _merge_groups(irreps: o3.Irreps) -> Optional[List[List[int]]]:
    """The blocks of ``irreps`` grouped by irrep (groups in sorted irrep order, blocks in
    their order within a group, empty blocks left out), or None when no irrep repeats."""
    groups: Dict[o3.Irrep, List[int]] = {}
    for i, (mul, ir) in enumerate(irreps):
        if mul > 0:
            groups.setdefault(ir, []).append(i)
    if all(len(blocks) == 1 for blocks in groups.values()):
        return None
    return [groups[ir] for ir in sorted(groups)]


def _merged_layout(irreps_in: o3.Irreps, irreps_attr: o3.Irreps, irreps_out: o3.Irreps,
                   tp: o3.TensorProduct, groups: List[List[int]]):
    """The tensor product ``tp`` (``_paths`` instructions) with the equal irreps of its first
    input merged into one block each: the merged irreps, their instructions, the input
    columns in merged order and, for each merged flat weight, its index in ``tp.weight``.

    Exact: with ``path_normalization="none"`` a path's coefficient does not depend on the
    multiplicities, so a merged path ``(ir1, ir2, ir3)`` is the sum of the original paths
    of its blocks, with their weights stacked along ``u`` (the first axis of ``"uvw"``)."""
    merged = o3.Irreps([(sum(irreps_in[b].mul for b in blocks), irreps_in[blocks[0]].ir) for blocks in groups])
    slices = irreps_in.slices()
    columns = torch.cat([torch.arange(slices[b].start, slices[b].stop) for blocks in groups for b in blocks])
    offsets, flat = {}, 0
    for ins in tp.instructions:
        offsets[(ins.i_in1, ins.i_in2, ins.i_out)] = flat
        flat += math.prod(ins.path_shape)
    instructions = _paths(merged, irreps_attr, irreps_out)
    index = []
    for i1, i2, i3, _, _ in instructions:
        for b in groups[i1]:
            start = offsets[(b, i2, i3)]
            index.append(torch.arange(start, start + irreps_in[b].mul * irreps_attr[i2].mul * irreps_out[i3].mul))
    return merged, instructions, columns, torch.cat(index)


class O3TensorProduct(ExactConstants, torch.nn.Module):
    r"""A linear layer conditioned on steerable attributes: the fully connected tensor
    product of the features :math:`\mathbf{h}` with the attributes :math:`\mathbf{a}` from
    SEGNN (`"Geometric and Physical Quantities Improve E(3) Equivariant Message Passing"
    <https://arxiv.org/abs/2110.02905>`_, Brandstetter et al., 2022):

    .. math::
        \mathbf{h}'_{w, l_3} = \sum_{l_1, l_2} \sum_{u, v}
            W^{l_1 l_2 l_3}_{uvw}\, \sqrt{2 l_3 + 1}\,
            \left(\mathbf{h}_{u, l_1} \otimes_{\mathrm{CG}} \mathbf{a}_{v, l_2}\right)_{l_3}
            \; + \; \mathbf{b}_w \,[l_3 = 0,\ \text{even}]

    over every path allowed by the Clebsch-Gordan rules and parity (e3nn's
    :class:`~e3nn.o3.TensorProduct`, ``"uvw"``, ``"component"`` normalization). Weights are
    initialised like :class:`torch.nn.Linear`, :math:`\mathcal{U}(\pm 1/\sqrt{\mathrm{fan\_in}})`
    with the fan-in of the output irrep (the sum of :math:`\mathrm{mul}_1 \mathrm{mul}_2`
    over its paths), and so is the bias of the even scalar outputs. This is SEGNN's
    layer (its ``tp_rescale``: e3nn's fan-in normalization undone by a rescale), written
    as one e3nn tensor product without the fan-in factor, which gives the same outputs
    without the extra pass; the flat weight ``tp.weight`` has the layout of e3nn's
    :class:`~e3nn.o3.FullyConnectedTensorProduct`. When an irrep repeats in ``irreps_in``
    (SEGNN's message input :math:`\mathbf{h}_i \| \mathbf{h}_j` holds each twice), the
    product runs with the equal irreps merged into one block each (``merged_tp``: fewer,
    larger paths; the input columns and the flat weights are gathered into the merged
    order, which is exact); the parameters, the state dict and ``tp`` keep the layout
    above. Without attributes (``irreps_attr = "1x0e"``, :math:`\mathbf{a} = 1`) it is an
    equivariant linear layer.

    Args:
        irreps_in (irreps): irreps of :math:`\mathbf{h}`.
        irreps_out (irreps): irreps of the output; each must be reachable from
            ``irreps_in x irreps_attr``.
        irreps_attr (irreps, optional): irreps of :math:`\mathbf{a}`. (default: ``"1x0e"``)
        bias (bool, optional): add a learned bias to the even scalar outputs.
            (default: :obj:`True`)
        backend (str, optional): what computes the tensor product: ``"e3nn"`` or
            ``"cueq"`` (NVIDIA cuEquivariance, ``pip install cuequivariance-torch``; fused
            kernels on CUDA with ``cuequivariance-ops-torch-cu12``). Both compute the same
            function of the same parameters (the state dict does not depend on it), see
            :class:`~equigraph.nn.steerable.CueqTensorProduct`. (default: ``"e3nn"``)

    Shapes:
        - **input:** features :math:`(*, \text{irreps\_in.dim})`, attributes
          :math:`(*, \text{irreps\_attr.dim})` *(optional for* ``"1x0e"`` *)*
        - **output:** :math:`(*, \text{irreps\_out.dim})`

    Example:
        >>> tp = O3TensorProduct("8x0e+4x1o", "6x0e+2x1o+2x2e", irreps_attr="0e+1o+2e")
        >>> h, a = torch.randn(10, tp.irreps_in.dim), torch.randn(10, tp.irreps_attr.dim)
        >>> tp(h, a).shape
        torch.Size([10, 22])
    """

    def __init__(self, irreps_in, irreps_out, irreps_attr=None, bias: bool = True, backend: str = "e3nn"):
        super().__init__()
        self.backend = check_tp_backend("backend", backend)
        self.irreps_in = as_irreps(irreps_in, "irreps_in")
        self.irreps_out = as_irreps(irreps_out, "irreps_out")
        self.irreps_attr = o3.Irreps("1x0e") if irreps_attr is None else as_irreps(irreps_attr, "irreps_attr")
        for name in ("irreps_in", "irreps_out", "irreps_attr"):
            if getattr(self, name).dim == 0:
                raise ValueError(f"{name} is empty")
        instructions = _paths(self.irreps_in, self.irreps_attr, self.irreps_out)
        reached = {ins[2] for ins in instructions}
        missing = [f"{mul}x{ir}" for i, (mul, ir) in enumerate(self.irreps_out) if mul > 0 and i not in reached]
        if missing:
            raise ValueError(f"irreps_out: {' + '.join(missing)} cannot be reached from irreps_in {self.irreps_in} "
                             f"x irreps_attr {self.irreps_attr} (no Clebsch-Gordan path with matching parity)")
        # Plain ints for forward(): torch.compile cannot guard on e3nn Irrep objects.
        self._in_dim, self._attr_dim = self.irreps_in.dim, self.irreps_attr.dim
        self._attr_is_one = self.irreps_attr == o3.Irreps("1x0e")
        # e3nn draws its own initial weights; keep that off the global RNG stream so that
        # a layer built after torch.manual_seed(s) equals one reset after torch.manual_seed(s).
        # Its Clebsch-Gordan buffers are built in float64 and kept exact through casts.
        groups = _merge_groups(self.irreps_in)
        with torch.random.fork_rng(devices=[]), float64_default() as dtype:
            self.tp = o3.TensorProduct(self.irreps_in, self.irreps_attr, self.irreps_out, instructions,
                                       irrep_normalization="component", path_normalization="none",
                                       internal_weights=True, shared_weights=True)
            if groups is not None:
                merged, merged_instructions, columns, weight_index = _merged_layout(
                    self.irreps_in, self.irreps_attr, self.irreps_out, self.tp, groups)
                merged_tp = o3.TensorProduct(merged, self.irreps_attr, self.irreps_out, merged_instructions,
                                             irrep_normalization="component", path_normalization="none",
                                             internal_weights=False, shared_weights=True)
        self._keep_constants(dtype)
        # The merged product is derived from tp (its weights, gathered), not state: held in a
        # tuple, it is no submodule, so none of its buffers enters the state dict (checkpoints
        # keep tp's layout, merged or not, through copies and pickling too); _apply moves it.
        self._merged: tuple = ()
        self._merged_constants: Dict[str, Tensor] = {}
        if groups is not None:
            self._merged_constants = constant_masters(merged_tp)
            self._merged = (merged_tp.to(dtype),)
            self.register_buffer("_merged_columns", columns, persistent=False)
            self.register_buffer("_merged_weight_index", weight_index, persistent=False)
        product = self.tp if self.merged_tp is None else self.merged_tp
        # The e3nn module keeps the parameters (and the state-dict layout) with either backend.
        self._cueq = CueqTensorProduct(product) if self.backend == "cueq" else None
        fan_in: Dict[int, int] = {}
        for ins in self.tp.instructions:
            mul_in, mul_attr = self.irreps_in[ins.i_in1].mul, self.irreps_attr[ins.i_in2].mul
            fan_in[ins.i_out] = fan_in.get(ins.i_out, 0) + mul_in * mul_attr
        self._fan_in = fan_in
        self._bias_slices = [(i, s.start, s.stop) for i, ((mul, ir), s)
                             in enumerate(zip(self.irreps_out, self.irreps_out.slices()))
                             if ir.l == 0 and ir.p == 1 and mul > 0]
        num_bias = sum(stop - start for _, start, stop in self._bias_slices)
        if bias and num_bias:
            self.bias = torch.nn.Parameter(torch.empty(num_bias))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    @property
    def merged_tp(self) -> Optional[o3.TensorProduct]:
        """The e3nn tensor product that runs with the equal irreps of ``irreps_in`` merged
        (weights passed in, gathered from ``tp.weight``), or None when no irrep repeats."""
        return self._merged[0] if self._merged else None

    @property
    def weight_numel(self) -> int:
        return self.tp.weight_numel

    def reset_parameters(self) -> None:
        with torch.no_grad():
            for ins, weight in zip(self.tp.instructions, self.tp.weight_views()):
                bound = 1.0 / math.sqrt(self._fan_in[ins.i_out])
                weight.uniform_(-bound, bound)
            if self.bias is not None:
                offset = 0
                for i, start, stop in self._bias_slices:
                    bound = 1.0 / math.sqrt(self._fan_in[i])
                    self.bias[offset:offset + stop - start].uniform_(-bound, bound)
                    offset += stop - start

    def _check(self, x: Tensor, attr: Optional[Tensor]) -> Tensor:
        if x.size(-1) != self._in_dim:
            raise ValueError(f"x must have last dimension {self._in_dim} (irreps_in {self.irreps_in}), "
                             f"got shape {list(x.shape)}")
        if attr is None:
            if not self._attr_is_one:
                raise ValueError(f"attr is missing: this layer is conditioned on irreps_attr {self.irreps_attr}")
            return x.new_ones(x.shape[:-1] + (1,))
        if attr.size(-1) != self._attr_dim or attr.shape[:-1] != x.shape[:-1]:
            raise ValueError(f"attr must have shape {list(x.shape[:-1]) + [self._attr_dim]} (irreps_attr "
                             f"{self.irreps_attr}, one row per row of x), got {list(attr.shape)}")
        return attr

    def add_bias(self, out: Tensor) -> Tensor:
        """Add the bias of the even scalar outputs to ``out`` (in place) and return it."""
        if self.bias is not None:
            offset = 0
            for _, start, stop in self._bias_slices:
                out[..., start:stop] += self.bias[offset:offset + stop - start]
                offset += stop - start
        return out

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        if self._merged:
            self._merged[0]._apply(fn, *args, **kwargs)
            restore_constants(self._merged[0], self._merged_constants)
        return self

    def forward(self, x: Tensor, attr: Optional[Tensor] = None) -> Tensor:
        attr = self._check(x, attr)
        if not self._merged:
            if self._cueq is not None:
                return self.add_bias(self._cueq(x, attr, self.tp.weight))
            return self.add_bias(self.tp(x, attr))
        x = x.index_select(-1, self._merged_columns)
        weight = self.tp.weight.index_select(0, self._merged_weight_index)
        if self._cueq is not None:
            return self.add_bias(self._cueq(x, attr, weight))
        return self.add_bias(self._merged[0](x, attr, weight))

    def __repr__(self) -> str:
        backend = f", backend={self.backend!r}" if self.backend != "e3nn" else ""
        return (f"{self.__class__.__name__}({self.irreps_in} x {self.irreps_attr} -> {self.irreps_out}, "
                f"weights={self.weight_numel}, bias={self.bias is not None}{backend})")


class O3TensorProductGate(torch.nn.Module):
    r"""An :class:`O3TensorProduct` followed by a :class:`Gate`: the tensor product outputs
    the gate's input (scalars, gates and gated irreps), the gate returns ``irreps_out``.
    SEGNN's ``O3TensorProductSwishGate``.

    Args:
        irreps_in (irreps): irreps of the features.
        irreps_out (irreps): irreps after the gate (scalars first, sorted).
        irreps_attr (irreps, optional): irreps of the attributes. (default: ``"1x0e"``)
        bias (bool, optional): bias on the even scalar outputs of the tensor product.
            (default: :obj:`True`)
        backend (str, optional): tensor-product backend, ``"e3nn"`` or ``"cueq"``
            (see :class:`O3TensorProduct`). (default: ``"e3nn"``)

    Shapes:
        - **input:** :math:`(*, \text{irreps\_in.dim})`, :math:`(*, \text{irreps\_attr.dim})`
        - **output:** :math:`(*, \text{irreps\_out.dim})`

    Example:
        >>> layer = O3TensorProductGate("4x0e+2x1o", "8x0e+4x1o", irreps_attr="0e+1o")
        >>> layer.tp.irreps_out  # 8 scalars, 4 gates, 4 vectors
        12x0e+4x1o
        >>> layer(torch.randn(3, 10), torch.randn(3, 4)).shape
        torch.Size([3, 20])
    """

    def __init__(self, irreps_in, irreps_out, irreps_attr=None, bias: bool = True, backend: str = "e3nn"):
        super().__init__()
        self.gate = Gate(irreps_out)
        self.tp = O3TensorProduct(irreps_in, self.gate.irreps_in, irreps_attr, bias=bias, backend=backend)
        self.irreps_in, self.irreps_attr, self.irreps_out = self.tp.irreps_in, self.tp.irreps_attr, self.gate.irreps_out

    def reset_parameters(self) -> None:
        self.tp.reset_parameters()

    def forward(self, x: Tensor, attr: Optional[Tensor] = None) -> Tensor:
        return self.gate(self.tp(x, attr))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.irreps_in} x {self.irreps_attr} -> {self.irreps_out})"
