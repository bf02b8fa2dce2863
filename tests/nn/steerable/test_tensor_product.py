"""O3TensorProduct: SEGNN's attribute-conditioned tensor-product layer."""
import copy
import math

import pytest
import torch
from e3nn import o3
from torch_geometric.data import Data

from equigraph.nn.steerable import O3TensorProduct, O3TensorProductGate
from equigraph.testing import assert_equivariant, default_tolerance

IN, OUT, ATTR = "4x0e+2x1o+1x1e+1x2e", "3x0e+2x0o+2x1o+2x1e+1x2e", "1x0e+1x1o+1x2e"


def _close(actual, expected):
    atol, rtol = default_tolerance(actual.dtype)
    torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol)


def _segnn_reference(layer, x, attr):
    """SEGNN's O3TensorProduct: e3nn's FullyConnectedTensorProduct ("component"), output
    divided by 1/sqrt(fan_in) per output irrep, plus the bias of the scalar outputs."""
    fctp = o3.FullyConnectedTensorProduct(layer.irreps_in, layer.irreps_attr, layer.irreps_out,
                                          irrep_normalization="component").to(x.dtype)
    with torch.no_grad():
        fctp.weight.copy_(layer.tp.weight)
    out = fctp(x, attr)
    fan_in = {}
    for ins in fctp.instructions:
        fan_in[ins.i_out] = fan_in.get(ins.i_out, 0) + ins.path_shape[0] * ins.path_shape[1]
    scale = torch.cat([torch.full((mul * ir.dim,), math.sqrt(fan_in[i]), dtype=x.dtype)
                       for i, (mul, ir) in enumerate(layer.irreps_out)])
    out = out * scale
    bias = [layer.bias[:3], torch.zeros(2 + 6 + 6 + 5)]  # only the 3x0e outputs carry a bias
    return out + torch.cat(bias).to(x.dtype)


def test_matches_segnn_definition():
    torch.manual_seed(0)
    layer = O3TensorProduct(IN, OUT, ATTR)
    x, attr = torch.randn(6, layer.irreps_in.dim), torch.randn(6, layer.irreps_attr.dim)
    _close(layer(x, attr), _segnn_reference(layer, x, attr))
    # The flat weight has e3nn's FullyConnectedTensorProduct layout.
    assert layer.weight_numel == o3.FullyConnectedTensorProduct(IN, ATTR, OUT).weight_numel


def test_init_like_linear_and_reset():
    torch.manual_seed(3)
    layer = O3TensorProduct("16x0e+8x1o", "8x0e+4x1o", "0e+1o")
    fan_in = {0: 16 + 8, 1: 16 + 8}  # each output irrep: two paths, mul_1 * mul_2 each
    for ins, w in zip(layer.tp.instructions, layer.tp.weight_views()):
        bound = 1 / math.sqrt(fan_in[ins.i_out])
        assert w.abs().max() <= bound and w.abs().max() > 0.8 * bound
    assert layer.bias.abs().max() <= 1 / math.sqrt(24)
    fresh = {k: v.clone() for k, v in layer.state_dict().items()}
    with torch.no_grad():
        for p in layer.parameters():
            p.fill_(7.0)
    torch.manual_seed(3)
    layer.reset_parameters()
    for k, v in fresh.items():
        assert torch.equal(layer.state_dict()[k], v), k


def test_without_attributes_is_equivariant_linear():
    layer = O3TensorProduct("4x0e+2x1o", "3x0e+1x1o")
    x = torch.randn(5, 10)
    _close(layer(x), layer(x, torch.ones(5, 1)))
    assert layer.irreps_attr == o3.Irreps("1x0e")


def _attr_module(layer):
    sh = o3.SphericalHarmonics(layer.irreps_attr, normalize=True, normalization="component")

    def run(data):  # attributes: harmonics of a per-row vector, transformed with the frame
        return layer(data.x, sh(data.pos))

    return run


def _assert_layer_equivariant(layer):
    layer = layer.to(torch.get_default_dtype())
    gen = torch.Generator().manual_seed(1)
    dtype = torch.get_default_dtype()
    data = Data(x=torch.randn(6, layer.irreps_in.dim, generator=gen).to(dtype),
                pos=torch.randn(6, 3, generator=gen).to(dtype))
    assert_equivariant(_attr_module(layer), data, "O3", in_types={"x": layer.irreps_in, "pos": "vector"},
                       out_types=layer.irreps_out)


@pytest.mark.parametrize("gated", [False, True])
def test_equivariant(gated):
    torch.manual_seed(0)
    _assert_layer_equivariant(O3TensorProductGate(IN, "3x0e+2x1o+1x2e", ATTR) if gated else O3TensorProduct(IN, OUT, ATTR))


def test_float32_float64_agree():
    torch.manual_seed(0)
    layer = O3TensorProduct(IN, OUT, ATTR).float()
    x, attr = torch.randn(4, layer.irreps_in.dim), torch.randn(4, layer.irreps_attr.dim)
    out32 = layer(x.float(), attr.float())
    out64 = layer.double()(x.double(), attr.double())
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out32.double(), out64, atol=1e-5, rtol=1e-5)


def test_gate_layer_layout():
    layer = O3TensorProductGate("4x0e+2x1o", "6x0e+3x1o+1x2e", "0e+1o+2e")
    assert layer.tp.irreps_out == o3.Irreps("10x0e+3x1o+1x2e")
    assert layer.irreps_out == o3.Irreps("6x0e+3x1o+1x2e")
    assert layer(torch.randn(2, 10), torch.randn(2, 9)).shape == (2, 6 + 9 + 5)
    assert "O3TensorProductGate" in repr(layer)


@pytest.mark.parametrize("args, match", [
    (("4x0e", "2x1o"), r"irreps_out: 2x1o cannot be reached"),
    (("4x0e", "2x1e", "0e+1o"), r"irreps_out: 2x1e cannot be reached"),
    (("4x0q", "2x0e"), "irreps_in"),
    (("4x0e", "2x0e", "0e+1z"), "irreps_attr"),
    (("", "2x0e"), "irreps_in is empty"),
])
def test_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        O3TensorProduct(*args)


def test_bad_inputs():
    layer = O3TensorProduct("4x0e+2x1o", "3x0e+1x1o", "0e+1o")
    with pytest.raises(ValueError, match="x must have last dimension 10"):
        layer(torch.zeros(3, 9), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="attr is missing"):
        layer(torch.zeros(3, 10))
    with pytest.raises(ValueError, match=r"attr must have shape \[3, 4\]"):
        layer(torch.zeros(3, 10), torch.zeros(2, 4))
    assert repr(layer) == "O3TensorProduct(4x0e+2x1o x 1x0e+1x1o -> 3x0e+1x1o, weights=24, bias=True)"


def _built_in_float32(*irreps):
    """An ``O3TensorProduct`` built (after ``torch.manual_seed(0)``) under a float32 default dtype."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        torch.manual_seed(0)
        return O3TensorProduct(*irreps)
    finally:
        torch.set_default_dtype(previous)


def test_double_after_float32_build_keeps_float64_coefficients():
    built32 = _built_in_float32(IN, OUT, ATTR)
    built64 = O3TensorProduct(IN, OUT, ATTR).double()
    built64.load_state_dict(built32.state_dict())
    built32 = built32.double()
    x, attr = torch.randn(5, built32.irreps_in.dim, dtype=torch.float64), torch.randn(5, 9, dtype=torch.float64)
    torch.testing.assert_close(built32(x, attr), built64(x, attr), atol=1e-13, rtol=1e-13)
    assert built32.float().double().tp.weight.dtype == torch.float64  # casts back and forth stay exact
    torch.testing.assert_close(built32(x, attr), built64(x, attr), atol=1e-6, rtol=1e-6)


def test_cueq_backend_without_the_package_is_a_clear_error(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "cuequivariance_torch", None)  # import fails as if not installed
    with pytest.raises(ValueError, match=r"backend='cueq' needs cuEquivariance.*pip install cuequivariance-torch"):
        O3TensorProduct("2x0e", "2x0e", backend="cueq")
    with pytest.raises(ValueError, match="backend must be one of"):
        O3TensorProduct("2x0e", "2x0e", backend="torch")


# SEGNN's first message layers (h_i || h_j || extra: every hidden irrep twice), narrowed.
MERGED_CASES = {
    "nbody_message": ("8x0e+8x1o+8x0e+8x1o+2x0e", "16x0e+8x1o", "1x0e+1x1o"),
    "qm9_message": ("4x0e+4x1o+4x2e+4x0e+4x1o+4x2e+1x0e", "12x0e+4x1o+4x2e", "1x0e+1x1o+1x2e+1x3o"),
    # unsorted, an empty block, an irrep three times
    "unsorted": ("2x1o+0x0e+3x0e+1x1o+1x0e+2x1o", "3x0e+2x1o+1x1e", "0e+1o"),
}


class _Unmerged(torch.nn.Module):
    """The layer before inputs were merged, rebuilt from e3nn: one TensorProduct over the
    blocks of irreps_in as given (its state dict is a checkpoint of that layout)."""

    def __init__(self, irreps_in, irreps_out, irreps_attr):
        super().__init__()
        irreps_in, irreps_out, irreps_attr = o3.Irreps(irreps_in), o3.Irreps(irreps_out), o3.Irreps(irreps_attr)
        instructions = [(i1, i2, i3, "uvw", True) for i1, (_, ir1) in enumerate(irreps_in)
                        for i2, (_, ir2) in enumerate(irreps_attr) for i3, (_, ir3) in enumerate(irreps_out)
                        if ir3 in ir1 * ir2]
        self.tp = o3.TensorProduct(irreps_in, irreps_attr, irreps_out, instructions, irrep_normalization="component",
                                   path_normalization="none", internal_weights=True, shared_weights=True)
        self.scalars = torch.tensor([ir.l == 0 and ir.p == 1 for (mul, ir) in irreps_out for _ in range(mul * ir.dim)])
        self.bias = torch.nn.Parameter(torch.randn(int(self.scalars.sum())))

    def forward(self, x, attr):
        out = self.tp(x, attr)
        return out.index_add(-1, self.scalars.nonzero()[:, 0], self.bias.expand(out.shape[:-1] + (-1,)))


def _inputs(layer, n=7, seed=1):
    gen, dtype = torch.Generator().manual_seed(seed), torch.get_default_dtype()
    return (torch.randn(n, layer.irreps_in.dim, generator=gen).to(dtype),
            torch.randn(n, layer.irreps_attr.dim, generator=gen).to(dtype))


def _grads(layer, x, attr, params):
    x, attr = x.clone().requires_grad_(True), attr.clone().requires_grad_(True)
    out = layer(x, attr)
    cot = torch.randn(out.shape, generator=torch.Generator().manual_seed(7)).to(out.dtype)
    return out, torch.autograd.grad((out * cot).sum(), [x, attr] + params)


@pytest.mark.parametrize("case", list(MERGED_CASES))
def test_merged_inputs_match_the_unmerged_product(case):
    irreps_in, irreps_out, irreps_attr = MERGED_CASES[case]
    torch.manual_seed(0)
    layer = O3TensorProduct(irreps_in, irreps_out, irreps_attr).to(torch.get_default_dtype())
    assert layer.irreps_in == o3.Irreps(irreps_in) and layer.irreps_out == o3.Irreps(irreps_out)
    assert layer.merged_tp is not None
    assert len(layer.merged_tp.instructions) < len(layer.tp.instructions)
    assert layer.merged_tp.irreps_in1 == o3.Irreps(irreps_in).sort().irreps.simplify()
    old = _Unmerged(irreps_in, irreps_out, irreps_attr).to(torch.get_default_dtype())
    old.load_state_dict(layer.state_dict())
    x, attr = _inputs(layer)
    out, grads = _grads(layer, x, attr, [layer.tp.weight, layer.bias])
    out_old, grads_old = _grads(old, x, attr, [old.tp.weight, old.bias])
    _close(out, out_old)
    for g, g_old in zip(grads, grads_old):
        _close(g, g_old)
    # the old code path is still there: tp holds the weights in the unmerged layout
    with torch.no_grad():
        _close(layer(x, attr), layer.add_bias(layer.tp(x, attr)))


@pytest.mark.parametrize("gated", [False, True])
def test_merged_state_dict_is_the_unmerged_layout(gated):
    irreps_in, irreps_out, irreps_attr = MERGED_CASES["qm9_message"]
    dtype = torch.get_default_dtype()
    torch.manual_seed(1)  # other initial weights: everything must come from the checkpoint
    if gated:
        layer = O3TensorProductGate(irreps_in, irreps_out, irreps_attr).to(dtype)
        inner = layer.tp
    else:
        layer = inner = O3TensorProduct(irreps_in, irreps_out, irreps_attr).to(dtype)
    torch.manual_seed(0)
    old = _Unmerged(irreps_in, inner.irreps_out, irreps_attr).to(dtype)
    checkpoint = old.state_dict()
    state = inner.state_dict()
    assert state.keys() == checkpoint.keys()  # no key of the merged product
    assert all(state[k].shape == v.shape for k, v in checkpoint.items())
    inner.load_state_dict(checkpoint)
    for k, v in checkpoint.items():
        assert torch.equal(inner.state_dict()[k], v), k
    x, attr = _inputs(layer)
    expected = old(x, attr)
    _close(layer(x, attr), layer.gate(expected) if gated else expected)


@pytest.mark.parametrize("case", ["nbody_message", "qm9_message"])
def test_merged_equivariant(case):
    irreps_in, irreps_out, irreps_attr = MERGED_CASES[case]
    torch.manual_seed(0)
    _assert_layer_equivariant(O3TensorProduct(irreps_in, irreps_out, irreps_attr))


def test_merged_matches_segnn_definition_and_keeps_init():
    irreps_in, irreps_out, irreps_attr = MERGED_CASES["qm9_message"]
    torch.manual_seed(0)
    layer = O3TensorProduct(irreps_in, irreps_out, irreps_attr).to(torch.get_default_dtype())
    # every path of the unmerged layout keeps its own bound (the fan-in of its output irrep)
    fan_in = {}
    for ins in layer.tp.instructions:
        fan_in[ins.i_out] = fan_in.get(ins.i_out, 0) + ins.path_shape[0] * ins.path_shape[1]
    for ins, w in zip(layer.tp.instructions, layer.tp.weight_views()):
        assert w.abs().max() <= 1 / math.sqrt(fan_in[ins.i_out])
    fresh = {k: v.clone() for k, v in layer.state_dict().items()}
    torch.manual_seed(0)
    layer.reset_parameters()
    for k, v in fresh.items():
        assert torch.equal(layer.state_dict()[k], v), k
    # SEGNN's definition: FullyConnectedTensorProduct ("component") divided by 1/sqrt(fan_in)
    x, attr = _inputs(layer)
    fctp = o3.FullyConnectedTensorProduct(layer.irreps_in, layer.irreps_attr, layer.irreps_out,
                                          irrep_normalization="component").to(x.dtype)
    with torch.no_grad():
        fctp.weight.copy_(layer.tp.weight)
    scale = torch.cat([torch.full((mul * ir.dim,), math.sqrt(fan_in[i]), dtype=x.dtype)
                       for i, (mul, ir) in enumerate(layer.irreps_out)])
    expected = layer.add_bias(fctp(x, attr) * scale)
    _close(layer(x, attr), expected.detach())


def test_unique_irreps_are_not_merged():
    assert O3TensorProduct(IN, OUT, ATTR).merged_tp is None
    assert O3TensorProduct("1x1o+2x0e", "2x0e+1x1o").merged_tp is None  # unsorted but no repeat
    layer = O3TensorProduct("2x0e+1x1o+3x0e", "2x0e+1x1o")
    assert "merged" not in " ".join(layer.state_dict())


def test_merged_casts_keep_float64_coefficients():
    irreps_in, irreps_out, irreps_attr = MERGED_CASES["qm9_message"]
    built32 = _built_in_float32(irreps_in, irreps_out, irreps_attr)
    twin = copy.deepcopy(built32).double()
    built32 = built32.double()
    old = _Unmerged(irreps_in, irreps_out, irreps_attr).double()
    old.load_state_dict(built32.state_dict())
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(5, twin.irreps_in.dim, generator=gen, dtype=torch.float64)
    attr = torch.randn(5, twin.irreps_attr.dim, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(built32(x, attr), old(x, attr), atol=1e-13, rtol=1e-13)
    torch.testing.assert_close(twin(x, attr), old(x, attr), atol=1e-13, rtol=1e-13)


@pytest.mark.parametrize("gated", [False, True])
def test_merged_cueq_backend(gated):
    pytest.importorskip("cuequivariance_torch")
    irreps_in, irreps_out, irreps_attr = MERGED_CASES["qm9_message"]
    cls = O3TensorProductGate if gated else O3TensorProduct
    dtype = torch.get_default_dtype()
    torch.manual_seed(0)
    ref = cls(irreps_in, irreps_out, irreps_attr).to(dtype)
    layer = cls(irreps_in, irreps_out, irreps_attr, backend="cueq").to(dtype)
    inner = layer.tp if gated else layer
    assert inner._cueq.weight_numel == inner.weight_numel and inner._cueq.dims[0] == inner.irreps_in.dim
    layer.load_state_dict(ref.state_dict())
    old = _Unmerged(irreps_in, inner.irreps_out, irreps_attr).to(dtype)
    old.load_state_dict(inner.state_dict())
    x, attr = _inputs(layer)
    params = [inner.tp.weight, inner.bias]
    out, grads = _grads(layer, x, attr, params)
    out_old, grads_old = _grads((lambda a, b: layer.gate(old(a, b))) if gated else old, x, attr,
                                [old.tp.weight, old.bias])
    _close(out, out_old)
    for g, g_old in zip(grads, grads_old):
        atol, rtol = default_tolerance(g.dtype)
        torch.testing.assert_close(g, g_old, atol=10 * atol, rtol=10 * rtol)


def test_merged_copies_and_pickles_keep_the_state_dict():
    import io
    irreps_in, irreps_out, irreps_attr = MERGED_CASES["qm9_message"]
    torch.manual_seed(0)
    layer = O3TensorProductGate(irreps_in, irreps_out, irreps_attr).to(torch.get_default_dtype())
    keys = layer.state_dict().keys()
    assert not any("merged" in k for k in keys)
    buffer = io.BytesIO()
    torch.save(layer, buffer)
    buffer.seek(0)
    x, attr = _inputs(layer)
    for twin in (copy.deepcopy(layer), copy.deepcopy(layer).float().to(x.dtype),
                 torch.load(buffer, weights_only=False)):
        assert twin.state_dict().keys() == keys
        twin.load_state_dict(layer.state_dict())  # strict: no missing or unexpected key
        _close(twin(x, attr), layer(x, attr))
