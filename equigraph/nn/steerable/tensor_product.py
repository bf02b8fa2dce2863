"""Attribute-conditioned O(3) tensor-product layers (SEGNN's ``O3TensorProduct``)."""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from e3nn import o3
from torch import Tensor

from .gate import Gate
from .irreps import as_irreps

__all__ = ["O3TensorProduct", "O3TensorProductGate", "SplitTensorProduct"]


def _paths(irreps_in: o3.Irreps, irreps_attr: o3.Irreps, irreps_out: o3.Irreps) -> List[tuple]:
    # Every Clebsch-Gordan path, fully connected ("uvw"), in the order of e3nn's
    # FullyConnectedTensorProduct, so that its flat weight vector has the same layout.
    return [(i1, i2, i3, "uvw", True)
            for i1, (_, ir1) in enumerate(irreps_in)
            for i2, (_, ir2) in enumerate(irreps_attr)
            for i3, (_, ir3) in enumerate(irreps_out)
            if ir3 in ir1 * ir2]


class O3TensorProduct(torch.nn.Module):
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
    :class:`~e3nn.o3.FullyConnectedTensorProduct`. Without attributes (``irreps_attr =
    "1x0e"``, :math:`\mathbf{a} = 1`) it is an equivariant linear layer.

    Args:
        irreps_in (irreps): irreps of :math:`\mathbf{h}`.
        irreps_out (irreps): irreps of the output; each must be reachable from
            ``irreps_in x irreps_attr``.
        irreps_attr (irreps, optional): irreps of :math:`\mathbf{a}`. (default: ``"1x0e"``)
        bias (bool, optional): add a learned bias to the even scalar outputs.
            (default: :obj:`True`)

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

    def __init__(self, irreps_in, irreps_out, irreps_attr=None, bias: bool = True):
        super().__init__()
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
        self.tp = o3.TensorProduct(self.irreps_in, self.irreps_attr, self.irreps_out, instructions,
                                   irrep_normalization="component", path_normalization="none",
                                   internal_weights=True, shared_weights=True)
        fan_in: Dict[int, int] = {}
        for ins in self.tp.instructions:
            fan_in[ins.i_out] = fan_in.get(ins.i_out, 0) + self.irreps_in[ins.i_in1].mul * self.irreps_attr[ins.i_in2].mul
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

    def forward(self, x: Tensor, attr: Optional[Tensor] = None) -> Tensor:
        attr = self._check(x, attr)
        return self.add_bias(self.tp(x, attr))

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}({self.irreps_in} x {self.irreps_attr} -> {self.irreps_out}, "
                f"weights={self.weight_numel}, bias={self.bias is not None})")


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

    def __init__(self, irreps_in, irreps_out, irreps_attr=None, bias: bool = True):
        super().__init__()
        self.gate = Gate(irreps_out)
        self.tp = O3TensorProduct(irreps_in, self.gate.irreps_in, irreps_attr, bias=bias)
        self.irreps_in, self.irreps_attr, self.irreps_out = self.tp.irreps_in, self.tp.irreps_attr, self.gate.irreps_out

    def reset_parameters(self) -> None:
        self.tp.reset_parameters()

    def forward(self, x: Tensor, attr: Optional[Tensor] = None) -> Tensor:
        return self.gate(self.tp(x, attr))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.irreps_in} x {self.irreps_attr} -> {self.irreps_out})"


class SplitTensorProduct:
    r"""Evaluates an :class:`O3TensorProduct` whose input is a concatenation of parts,
    mixing each part's channels before the Clebsch-Gordan contraction, so that parts that
    live on nodes are mixed once per node instead of once per edge.

    The tensor product is linear in the features and its weights act on multiplicities
    while the Clebsch-Gordan coefficients act on the irrep components, so for a path
    :math:`p = (l_1, l_2 \to l_3)`

    .. math::
        \sum_u W^p_{uw} \left(\mathbf{h}_u \otimes_{\mathrm{CG}} \mathbf{a}\right)
        = \Big(\underbrace{\textstyle\sum_u W^p_{uw} \mathbf{h}_u}_{\mathbf{y}^p_w}\Big)
          \otimes_{\mathrm{CG}} \mathbf{a}

    and the inputs of twin parts (same irreps, e.g. :math:`\mathbf{h}_i` and
    :math:`\mathbf{h}_j` of a message) can be mixed separately and summed before one
    contraction: the same function as :meth:`O3TensorProduct.forward` on the concatenated
    input, with :math:`|\mathcal{V}|` instead of :math:`|\mathcal{E}|` rows in the matrix
    products of the node parts. Needs attributes of multiplicity 1 (spherical harmonics).

    Args:
        tp (O3TensorProduct): the layer (its weights are read at every call).
        parts (sequence of irreps): the parts, in order; their concatenation must be
            ``tp.irreps_in`` channel by channel.

    Example:
        >>> tp = O3TensorProduct("4x0e+2x1o+4x0e+2x1o+1x0e", "6x0e+2x1o", "0e+1o")
        >>> split = SplitTensorProduct(tp, ["4x0e+2x1o", "4x0e+2x1o", "1x0e"])
        >>> h, extra, a = torch.randn(5, 10), torch.randn(7, 1), torch.randn(7, 4)
        >>> src, dst = torch.randint(0, 5, (7,)), torch.randint(0, 5, (7,))
        >>> y_i, y_j = split.mix(h, parts=[0, 1])  # once per node
        >>> out = split.contract([(y_i[dst] + y_j[src], 0), (split.mix(extra, parts=[2])[0], 2)], a)
        >>> ref = tp(torch.cat([h[dst], h[src], extra], dim=1), a)
        >>> torch.allclose(tp.add_bias(out), ref, atol=1e-5)
        True
    """

    def __init__(self, tp: O3TensorProduct, parts: Sequence):
        if not isinstance(tp, O3TensorProduct):
            raise ValueError(f"tp must be an O3TensorProduct, got {type(tp).__name__}")
        if any(mul != 1 for mul, _ in tp.irreps_attr):
            raise ValueError(f"SplitTensorProduct needs attributes of multiplicity 1, got {tp.irreps_attr}")
        self._tp = tp
        self.parts = [as_irreps(p, f"parts[{k}]") for k, p in enumerate(parts)]
        self.irreps_out = tp.irreps_out
        in_irreps = tp.irreps_in
        starts = [s.start for s in in_irreps.slices()]
        # Locate every entry of every part inside the (possibly simplified) input irreps.
        offset = 0
        self._entries: List[List[Tuple[int, int, o3.Irreps]]] = []  # per part: (tp entry, row0, mul_ir)
        for k, part in enumerate(self.parts):
            entries = []
            for mul, ir in part:
                if mul == 0:
                    continue
                a = max(i for i, st in enumerate(starts) if st <= offset) if offset < in_irreps.dim else None
                if a is None or in_irreps[a].ir != ir or (offset - starts[a]) % ir.dim \
                        or offset + mul * ir.dim > starts[a] + in_irreps[a].dim:
                    raise ValueError(f"parts do not concatenate to irreps_in {in_irreps}: {mul}x{ir} of parts[{k}] "
                                     f"does not line up with it")
                entries.append((a, (offset - starts[a]) // ir.dim, o3.Irreps([(mul, ir)])[0]))
                offset += mul * ir.dim
            self._entries.append(entries)
        if offset != in_irreps.dim:
            raise ValueError(f"parts do not concatenate to irreps_in {in_irreps}: they have dimension {offset}")

        # Per part and entry, the paths ("classes") that read it, in a fixed order: the
        # mixed tensor of an entry is [rows, d_in, sum of the paths' output multiplicities].
        w3j: Dict[tuple, Tensor] = {}
        self._classes: List[List[List[dict]]] = []
        self._layout: List[List[Tuple[int, int]]] = []  # per part, per entry: (offset, width) in the mixed tensor
        for entries in self._entries:
            part_classes, layout, width = [], [], 0
            for a, row0, (mul, ir) in entries:
                classes = []
                for n, ins in enumerate(tp.tp.instructions):
                    if ins.i_in1 != a:
                        continue
                    ir2, (mul_out, ir3) = tp.irreps_attr[ins.i_in2].ir, tp.irreps_out[ins.i_out]
                    key = (ir.l, ir2.l, ir3.l)
                    if key not in w3j:
                        w3j[key] = o3.wigner_3j(*key, dtype=torch.float64)
                    cg = w3j[key] * ins.path_weight
                    d1, d2, d3 = cg.shape
                    if d1 == 1:
                        kind, mat = "outer", cg[0]  # [d2, d3]
                    elif d3 == 1:
                        kind, mat = "dot", cg[:, :, 0].t()  # [d2, d1]
                    elif d2 == 1 and torch.equal(cg[:, 0, :], torch.diag(torch.diagonal(cg[:, 0, :]))):
                        kind, mat = "diag", torch.diagonal(cg[:, 0, :]).clone()  # [d1]
                    else:
                        kind, mat = "general", cg.permute(1, 0, 2).reshape(d2, d1 * d3)
                    classes.append(dict(ins=n, rows=(row0, row0 + mul), i_attr=ins.i_in2, i_out=ins.i_out,
                                        mul_out=mul_out, dims=(d1, d2, d3), kind=kind, mat=mat))
                part_classes.append(classes)
                cols = sum(c["mul_out"] for c in classes)
                layout.append((width, cols))
                width += ir.dim * cols
            self._classes.append(part_classes)
            self._layout.append(layout)
        self._mats: Dict[tuple, Tensor] = {}

    def width(self, part: int) -> int:
        """Width of the mixed tensor of ``part``."""
        return sum(self._entries[part][e][2].ir.dim * cols for e, (_, cols) in enumerate(self._layout[part]))

    def _check_twins(self, parts: Sequence[int]) -> None:
        ref = self.parts[parts[0]]
        for p in parts:
            if not 0 <= p < len(self.parts):
                raise ValueError(f"part index {p} out of range (there are {len(self.parts)} parts)")
            if self.parts[p] != ref or [[(c["i_attr"], c["i_out"]) for c in cl] for cl in self._classes[p]] != \
                    [[(c["i_attr"], c["i_out"]) for c in cl] for cl in self._classes[parts[0]]]:
                raise ValueError(f"parts {list(parts)} are not twins (same irreps and paths)")

    def mix(self, x: Tensor, parts: Sequence[int]) -> List[Tensor]:
        """Mix ``x`` (irreps of the listed parts, which must be twins) with each part's
        weights: one ``[*, width(part)]`` tensor per part, one matrix product per entry."""
        self._check_twins(parts)
        tp = self._tp
        views = list(tp.tp.weight_views())
        part_irreps = self.parts[parts[0]]
        if x.size(-1) != part_irreps.dim:
            raise ValueError(f"x must have last dimension {part_irreps.dim} (irreps {part_irreps}), got {list(x.shape)}")
        lead = x.shape[:-1]
        x = x.reshape(-1, part_irreps.dim)
        outs: List[List[Tensor]] = [[] for _ in parts]
        start = 0
        for e, (_, _, (mul, ir)) in enumerate(self._entries[parts[0]]):
            xe = x[:, start:start + mul * ir.dim].reshape(-1, mul, ir.dim).transpose(1, 2)  # [n, d, u]
            start += mul * ir.dim
            weights = [views[c["ins"]][c["rows"][0]:c["rows"][1], 0, :]
                       for p in parts for c in self._classes[p][e]]
            y = torch.matmul(xe, torch.cat(weights, dim=1) if len(weights) > 1 else weights[0])
            cols = self._layout[parts[0]][e][1]
            for k, yk in enumerate(y.split(cols, dim=2)):
                outs[k].append(yk.reshape(yk.size(0), -1))
        return [torch.cat(o, dim=1).reshape(lead + (-1,)) if len(o) > 1 else o[0].reshape(lead + (-1,)) for o in outs]

    def _mat(self, part: int, e: int, c: int, like: Tensor) -> Tensor:
        key = (part, e, c, like.dtype, like.device)
        mat = self._mats.get(key)
        if mat is None:
            mat = self._classes[part][e][c]["mat"].to(dtype=like.dtype, device=like.device)
            self._mats[key] = mat
        return mat

    def contract(self, mixed: Sequence[Tuple[Tensor, int]], attr: Tensor) -> Tensor:
        """Sum over ``(y, part)`` of the Clebsch-Gordan contractions of the mixed tensors
        ``y`` (``[E, width(part)]``) with the attributes ``[E, irreps_attr.dim]``: the tensor
        product's output without bias, ``[E, irreps_out.dim]``."""
        tp = self._tp
        attrs = [attr[:, s] for s in tp.irreps_attr.slices()]
        acc: Dict[int, Tensor] = {}
        rows = attr.size(0)
        for y, part in mixed:
            if y.shape != (rows, self.width(part)):
                raise ValueError(f"mixed tensor of part {part} must have shape [{rows}, {self.width(part)}], "
                                 f"got {list(y.shape)}")
            for e, classes in enumerate(self._classes[part]):
                off, cols = self._layout[part][e]
                d1 = self._entries[part][e][2].ir.dim
                ye = y[:, off:off + d1 * cols].view(rows, d1, cols)
                col = 0
                for c, cls in enumerate(classes):
                    w = cls["mul_out"]
                    yc = ye[:, :, col:col + w]  # [E, d1, w]
                    col += w
                    a, mat, (_, _, d3) = attrs[cls["i_attr"]], self._mat(part, e, c, y), cls["dims"]
                    if cls["kind"] == "outer":
                        out = yc[:, 0, :, None] * (a @ mat)[:, None, :]
                    elif cls["kind"] == "dot":
                        out = torch.bmm((a @ mat).unsqueeze(1), yc).transpose(1, 2)  # [E, w, 1]
                    elif cls["kind"] == "diag":
                        out = yc.transpose(1, 2) * (a * mat)[:, None, :]
                    else:
                        b = (a @ mat).view(rows, d1, d3)
                        out = torch.bmm(yc.transpose(1, 2), b)
                    i_out = cls["i_out"]
                    acc[i_out] = out if i_out not in acc else acc[i_out] + out
        outs = []
        for i, (mul, ir) in enumerate(tp.irreps_out):
            if mul == 0:
                continue
            if i in acc:
                outs.append(acc[i].reshape(rows, mul * ir.dim))
            else:
                outs.append(attr.new_zeros(rows, mul * ir.dim))
        return torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]
