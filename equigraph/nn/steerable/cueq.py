"""NVIDIA cuEquivariance as an optional backend for e3nn tensor products.

:class:`CueqTensorProduct` computes the function of an e3nn
:class:`~e3nn.o3.TensorProduct` (``"uvw"`` or ``"uvu"`` instructions) as a cuequivariance
segmented polynomial. It holds no parameters: the weights stay in the e3nn module, so a
state dict is the same with either backend and checkpoints move between them. The
Clebsch-Gordan coefficients are e3nn's (:func:`e3nn.o3.wigner_3j`, float64) times each
instruction's ``path_weight`` (e3nn's irrep and path normalization), so the basis, the
normalization and the flat weight layout are e3nn's by construction: cuequivariance's own
``cue.O3`` uses another real basis, and its fully connected descriptor another
normalization. Features keep e3nn's ``mul_ir`` layout outside; inside they are permuted to
the ``ir_mul`` layout of the kernels.

On CUDA the polynomial runs with the fused kernels of ``cuequivariance-ops-torch-cu12``
(``method="fused_tp"``; without that package cuequivariance warns and falls back to its
naive implementation); on CPU it runs the naive implementation (``torch.einsum`` per path),
which is for testing, not speed.
"""
from __future__ import annotations

import math
from typing import Dict, List, Tuple

import torch
from e3nn import o3
from torch import Tensor

__all__ = ["TP_BACKENDS", "check_tp_backend", "CueqTensorProduct"]

TP_BACKENDS = ("e3nn", "cueq")

_INSTALL = ("pip install cuequivariance-torch (and cuequivariance-ops-torch-cu12 for the fused GPU kernels)")

# e3nn connection mode -> subscripts of the segmented tensor product (weights, in1, in2, out;
# ``i``, ``j``, ``k`` index the irrep components, ``u``, ``v``, ``w`` the multiplicities).
_SUBSCRIPTS = {"uvw": "uvw,iu,jv,kw+ijk", "uvu": "uv,iu,jv,ku+ijk"}


def check_tp_backend(name: str, value) -> str:
    """``value`` if it names a tensor-product backend; ``"cueq"`` also needs cuequivariance."""
    if value not in TP_BACKENDS:
        raise ValueError(f"{name} must be one of {TP_BACKENDS}, got {value!r}")
    if value == "cueq":
        _import_cueq(name)
    return value


def _import_cueq(name: str = "tp_backend"):
    try:
        import cuequivariance as cue
        import cuequivariance_torch as cuet
    except ImportError:
        raise ValueError(f"{name}='cueq' needs cuEquivariance, which is not installed: {_INSTALL}") from None
    return cue, cuet


def _ir_mul_permutation(irreps: o3.Irreps) -> Tensor:
    # perm[p] = index in the mul_ir layout of position p of the ir_mul layout.
    perm: List[int] = []
    for (mul, ir), s in zip(irreps, irreps.slices()):
        perm.extend(s.start + u * ir.dim + i for i in range(ir.dim) for u in range(mul))
    return torch.tensor(perm, dtype=torch.long)


class CueqTensorProduct:
    r"""The function ``tp(x1, x2, weight)`` of an e3nn tensor product, computed by
    cuequivariance. Not a module: it has no parameters or buffers of its own (the
    polynomial is built once; its torch module is built per device and dtype on first use
    and cached).

    Args:
        tp (e3nn.o3.TensorProduct): all instructions ``"uvw"`` or all ``"uvu"``, with weights.

    Example:
        >>> import torch
        >>> from e3nn import o3
        >>> tp = o3.FullyConnectedTensorProduct("2x0e+1x1o", "0e+1o", "2x0e+1x1o")
        >>> cueq = CueqTensorProduct(tp)
        >>> x1, x2 = torch.randn(4, 5), torch.randn(4, 4)
        >>> torch.allclose(cueq(x1, x2, tp.weight), tp(x1, x2), atol=1e-5)
        True
    """

    def __init__(self, tp: o3.TensorProduct):
        cue, _ = _import_cueq()
        modes = {ins.connection_mode for ins in tp.instructions}
        if len(modes) != 1 or not modes <= set(_SUBSCRIPTS) or not all(ins.has_weight for ins in tp.instructions):
            raise ValueError(f"tp_backend='cueq' supports e3nn tensor products whose instructions are all 'uvw' or "
                             f"all 'uvu' with weights, got modes {sorted(modes)}")
        mode = modes.pop()
        irreps1, irreps2, irreps_out = tp.irreps_in1, tp.irreps_in2, tp.irreps_out
        d = cue.SegmentedTensorProduct.from_subscripts(_SUBSCRIPTS[mode])
        for operand, irreps in ((1, irreps1), (2, irreps2), (3, irreps_out)):
            for mul, ir in irreps:
                d.add_segment(operand, (ir.dim, mul))
        for ins in tp.instructions:
            (mul1, ir1), (mul2, ir2), (_, ir3) = irreps1[ins.i_in1], irreps2[ins.i_in2], irreps_out[ins.i_out]
            # e3nn's path: wigner_3j times its normalization coefficient (path_weight).
            cg = o3.wigner_3j(ir1.l, ir2.l, ir3.l, dtype=torch.float64) * ins.path_weight
            # A new weight segment per instruction, in instruction order: e3nn's flat layout.
            weight_shape = (mul1, mul2, irreps_out[ins.i_out].mul) if mode == "uvw" else (mul1, mul2)
            d.add_path(weight_shape, ins.i_in1, ins.i_in2, ins.i_out, c=cg.numpy())
        if d.operands[0].size != tp.weight_numel:  # the layouts must agree for weights to carry over
            raise ValueError(f"tp_backend='cueq': weight layout mismatch ({d.operands[0].size} != "
                             f"{tp.weight_numel})")
        self.polynomial = cue.SegmentedPolynomial.eval_last_operand(d)
        self.dims = (irreps1.dim, irreps2.dim, irreps_out.dim)
        self.weight_numel = tp.weight_numel
        self._perms = (_ir_mul_permutation(irreps1), _ir_mul_permutation(irreps2),
                       torch.argsort(_ir_mul_permutation(irreps_out)))
        self._cache: Dict[Tuple[torch.device, torch.dtype], tuple] = {}

    def _compiled(self, device: torch.device, dtype: torch.dtype):
        key = (device, dtype)
        entry = self._cache.get(key)
        if entry is None:
            _, cuet = _import_cueq()
            if device.type == "cuda":
                # fused_tp computes in float32 or float64; cuequivariance warns and falls back
                # to its naive implementation when the kernels are not installed.
                method = "fused_tp"
                math_dtype = dtype if dtype in (torch.float32, torch.float64) else torch.float32
            else:
                method, math_dtype = "naive", dtype
            module = cuet.SegmentedPolynomial(self.polynomial, method=method, math_dtype=math_dtype).to(device)
            entry = (module,) + tuple(p.to(device) for p in self._perms)
            self._cache[key] = entry
        return entry

    def __call__(self, x1: Tensor, x2: Tensor, weight: Tensor) -> Tensor:
        """``x1`` ``[*, d1]``, ``x2`` ``[*, d2]`` (same leading shape), ``weight``
        ``[weight_numel]`` (shared) or ``[*, weight_numel]``; returns ``[*, d_out]``."""
        lead = x1.shape[:-1]
        rows = math.prod(lead)
        if rows == 0:
            return x1.new_zeros(lead + (self.dims[2],))
        module, perm1, perm2, perm_out = self._compiled(x1.device, x1.dtype)
        x1 = x1.reshape(rows, self.dims[0]).index_select(-1, perm1)
        x2 = x2.reshape(rows, self.dims[1]).index_select(-1, perm2)
        weight = weight.reshape(1 if weight.dim() == 1 else rows, self.weight_numel)
        out = module([weight, x1, x2])[0]
        return out.index_select(-1, perm_out).reshape(lead + (self.dims[2],))

    def __getstate__(self):
        # The per-device torch modules are rebuilt on demand after a copy or unpickling.
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state
