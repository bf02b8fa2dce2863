"""The cuEquivariance backend (``backend="cueq"``) against e3nn on the same weights: forward and
gradients for several irreps (orders up to 3, parity, multiplicities, SEGNN's N-body and QM9
layers), equivariance, state-dict compatibility, SEGNN and TFN models, and CUDA where present.
Float32 and float64 (conftest). Skipped without cuequivariance-torch."""
import copy
import warnings

import pytest
import torch
from e3nn import o3
from torch_geometric.data import Batch, Data

pytest.importorskip("cuequivariance_torch")

from equigraph.models import SEGNN, TFN  # noqa: E402
from equigraph.nn.conv.tfn import TFNConv  # noqa: E402
from equigraph.nn.steerable import O3TensorProduct, O3TensorProductGate  # noqa: E402
from equigraph.testing import assert_equivariant, default_tolerance  # noqa: E402

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

CASES = {
    # orders up to 2, both parities, several multiplicities
    "parity_l2": ("4x0e+2x1o+1x1e+1x2e", "3x0e+2x0o+2x1o+2x1e+1x2e", "1x0e+1x1o+1x2e"),
    # an equivariant linear layer (no attributes)
    "linear": ("5x0e+3x1o+2x2e", "4x0e+2x1o+1x2e", None),
    # SEGNN N-body, first message layer (hidden 32x0e+32x1o, |r| and q_i q_j, attributes l <= 1)
    "nbody_message": ("32x0e+32x1o+32x0e+32x1o+2x0e", "64x0e+32x1o", "1x0e+1x1o"),
    # SEGNN QM9 message layer at a ninth of the width (hidden 36x0e+36x1o+36x2e, attributes l <= 3)
    "qm9_message": ("4x0e+4x1o+4x2e+4x0e+4x1o+4x2e+1x0e", "12x0e+4x1o+4x2e", "1x0e+1x1o+1x2e+1x3o"),
}


def _close(actual, expected, scale=1.0):
    atol, rtol = default_tolerance(actual.dtype)
    torch.testing.assert_close(actual, expected, atol=atol * scale, rtol=rtol * scale)


def _pair(irreps_in, irreps_out, irreps_attr, gated=False):
    cls = O3TensorProductGate if gated else O3TensorProduct
    torch.manual_seed(0)
    ref = cls(irreps_in, irreps_out, irreps_attr).to(torch.get_default_dtype())
    cueq = cls(irreps_in, irreps_out, irreps_attr, backend="cueq").to(torch.get_default_dtype())
    cueq.load_state_dict(ref.state_dict())  # the same parameters, the same state-dict keys
    return ref, cueq


def _grads(layer, x, attr):
    x, attr = x.clone().requires_grad_(True), None if attr is None else attr.clone().requires_grad_(True)
    out = layer(x, attr)
    # A fixed random cotangent: every output component contributes to the gradients.
    cot = torch.randn(out.shape, generator=torch.Generator().manual_seed(7)).to(out.dtype)
    wrt = [x] + ([attr] if attr is not None else []) + list(layer.parameters())
    return out, torch.autograd.grad((out * cot).sum(), wrt)


@pytest.mark.parametrize("case", list(CASES))
def test_agrees_with_e3nn(case):
    irreps_in, irreps_out, irreps_attr = CASES[case]
    ref, cueq = _pair(irreps_in, irreps_out, irreps_attr)
    assert ref.state_dict().keys() == cueq.state_dict().keys()
    gen = torch.Generator().manual_seed(1)
    dtype = torch.get_default_dtype()
    x = torch.randn(7, ref.irreps_in.dim, generator=gen).to(dtype)
    attr = None if irreps_attr is None else torch.randn(7, ref.irreps_attr.dim, generator=gen).to(dtype)
    out_ref, grads_ref = _grads(ref, x, attr)
    out_cueq, grads_cueq = _grads(cueq, x, attr)
    _close(out_cueq, out_ref)
    for g_cueq, g_ref in zip(grads_cueq, grads_ref):
        _close(g_cueq, g_ref, scale=10.0)  # sums over the batch: a few more roundings


def test_gated_layer_and_leading_dimensions():
    ref, cueq = _pair("4x0e+2x1o", "6x0e+3x1o+1x2e", "0e+1o+2e", gated=True)
    dtype = torch.get_default_dtype()
    x, attr = torch.randn(2, 3, 10).to(dtype), torch.randn(2, 3, 9).to(dtype)
    _close(cueq(x, attr), ref(x, attr))
    assert cueq(x[:0], attr[:0]).shape == (0, 3, ref.irreps_out.dim)


def test_equivariant():
    _, layer = _pair(*CASES["parity_l2"])
    sh = o3.SphericalHarmonics(layer.irreps_attr, normalize=True, normalization="component")
    gen = torch.Generator().manual_seed(1)
    dtype = torch.get_default_dtype()
    data = Data(x=torch.randn(6, layer.irreps_in.dim, generator=gen).to(dtype),
                pos=torch.randn(6, 3, generator=gen).to(dtype))
    assert_equivariant(lambda d: layer(d.x, sh(d.pos)), data, "O3",
                       in_types={"x": layer.irreps_in, "pos": "vector"}, out_types=layer.irreps_out)


def test_copies_casts_and_repr():
    ref, cueq = _pair(*CASES["parity_l2"])
    x, attr = torch.randn(3, ref.irreps_in.dim, dtype=torch.float64), torch.randn(3, 9, dtype=torch.float64)
    expected = ref.double()(x, attr)
    # A deep copy, used in float32 then cast back, computes with float64 coefficients again.
    twin = copy.deepcopy(cueq).float()
    twin(x.float(), attr.float())
    twin = twin.double()
    twin.load_state_dict(ref.state_dict())
    torch.testing.assert_close(twin(x, attr), expected, atol=1e-13, rtol=1e-13)
    assert repr(cueq).endswith("backend='cueq')")
    with pytest.raises(ValueError, match="backend must be one of"):
        O3TensorProduct("2x0e", "2x0e", backend="cuda")


def _molecules(dtype):
    gen = torch.Generator().manual_seed(3)
    graphs = []
    for n in (4, 3, 1):
        pos = 1.3 * torch.randn(n, 3, generator=gen, dtype=torch.float64)
        graphs.append(Data(z=torch.randint(1, 10, (n,), generator=gen), pos=pos.to(dtype)))
    return Batch.from_data_list(graphs)


@pytest.mark.parametrize("model_cls, kwargs", [
    # Small models: the naive CPU implementation builds one graph module per tensor product.
    (SEGNN, dict(hidden_channels=8, num_layers=1, lmax_h=1, lmax_attr=2, out_channels=1, norm="instance",
                 interaction_graph=2.5)),
    (TFN, dict(hidden_irreps="6x0e+3x1o+2x2e", num_layers=2, lmax=2, out_channels=1, interaction_graph=2.5)),
])
def test_model_agrees_with_e3nn(model_cls, kwargs):
    dtype = torch.get_default_dtype()
    torch.manual_seed(0)
    ref = model_cls(**kwargs).to(dtype)
    torch.manual_seed(0)
    cueq = model_cls(**kwargs, tp_backend="cueq").to(dtype)
    for (name, a), b in zip(ref.state_dict().items(), cueq.state_dict().values()):
        assert torch.equal(a, b), name  # same seed, same parameters: the backend draws nothing
    data = _molecules(dtype)
    outs = []
    for model in (ref, cueq):
        pos = data.pos.clone().requires_grad_(True)
        batch = data.clone()
        batch.pos = pos
        y = model(batch)["y"]
        outs.append((y, torch.autograd.grad(y.sum(), pos)[0]))
    _close(outs[1][0], outs[0][0], scale=10.0)
    _close(outs[1][1], outs[0][1], scale=10.0)
    assert "tp_backend='cueq'" in repr(cueq)


def test_tfn_conv_agrees_with_e3nn():
    dtype = torch.get_default_dtype()
    torch.manual_seed(0)
    ref = TFNConv("4x0e+2x1o+1x2e", "4x0e+2x1o+1x1e+1x2e", lmax=2, cutoff=3.0).to(dtype)
    cueq = TFNConv("4x0e+2x1o+1x2e", "4x0e+2x1o+1x1e+1x2e", lmax=2, cutoff=3.0, tp_backend="cueq").to(dtype)
    cueq.load_state_dict(ref.state_dict())
    gen = torch.Generator().manual_seed(2)
    x, pos = torch.randn(5, ref.irreps_in.dim, generator=gen).to(dtype), torch.randn(5, 3, generator=gen).to(dtype)
    edge_index = torch.tensor([[0, 1, 1, 2, 3, 4, 2], [1, 0, 2, 1, 4, 3, 0]])
    _close(cueq(x, pos, edge_index), ref(x, pos, edge_index))
    _close(cueq(x, pos, edge_index[:, :0]), ref(x, pos, edge_index[:, :0]))  # no edges at all


@CUDA
def test_cuda_agrees_with_cpu_e3nn():
    dtype = torch.get_default_dtype()
    for case in ("parity_l2", "qm9_message"):
        ref, cueq = _pair(*CASES[case])
        x, attr = torch.randn(64, ref.irreps_in.dim).to(dtype), torch.randn(64, ref.irreps_attr.dim).to(dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the naive fallback without cuequivariance-ops: still checked
            out = cueq.cuda()(x.cuda(), attr.cuda()).cpu()
        _close(out, ref(x, attr), scale=10.0)
    kwargs = dict(hidden_channels=8, num_layers=2, lmax_h=2, lmax_attr=2, out_channels=1, interaction_graph=2.5)
    data = _molecules(dtype)
    torch.manual_seed(0)
    model = SEGNN(**kwargs).to(dtype)
    twin = SEGNN(**kwargs, tp_backend="cueq").to(dtype)
    twin.load_state_dict(model.state_dict())
    _close(twin.cuda()(data.cuda())["y"].cpu(), model(data)["y"], scale=10.0)


@pytest.mark.parametrize("instructions", [
    [(0, 0, 0, "uvw", True), (1, 1, 0, "uvu", True)],  # two connection modes
    [(0, 0, 0, "uvu", False)],  # no weights: nothing for the layer to train
])
def test_unsupported_tensor_products_are_refused(instructions):
    from equigraph.nn.steerable.cueq import CueqTensorProduct

    tp = o3.TensorProduct("2x0e+2x1o", "1x0e+1x1o", "2x0e", instructions)
    with pytest.raises(ValueError, match=r"tp_backend='cueq' supports e3nn tensor products whose instructions are all "
                                         r"'uvw' or all 'uvu' with weights"):
        CueqTensorProduct(tp)
