"""O3TensorProduct: SEGNN's attribute-conditioned tensor-product layer."""
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


@pytest.mark.parametrize("gated", [False, True])
def test_equivariant(gated):
    torch.manual_seed(0)
    layer = O3TensorProductGate(IN, "3x0e+2x1o+1x2e", ATTR) if gated else O3TensorProduct(IN, OUT, ATTR)
    layer = layer.to(torch.get_default_dtype())
    gen = torch.Generator().manual_seed(1)
    dtype = torch.get_default_dtype()
    data = Data(x=torch.randn(6, layer.irreps_in.dim, generator=gen).to(dtype),
                pos=torch.randn(6, 3, generator=gen).to(dtype))
    assert_equivariant(_attr_module(layer), data, "O3", in_types={"x": layer.irreps_in, "pos": "vector"},
                       out_types=layer.irreps_out)


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


def test_double_after_float32_build_keeps_float64_coefficients():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        torch.manual_seed(0)
        built32 = O3TensorProduct(IN, OUT, ATTR)
    finally:
        torch.set_default_dtype(previous)
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
