"""InstanceNorm (per graph, SEGNN) and BatchNorm (e3nn) on steerable features."""
import pytest
import torch
from e3nn import nn as e3nn_nn
from torch_geometric.data import Data

from equigraph.nn.steerable import BatchNorm, InstanceNorm
from equigraph.testing import assert_batch_consistent, assert_equivariant, default_tolerance

IRREPS = "3x0e+1x0o+2x1o+1x2e"


def _close(actual, expected):
    atol, rtol = default_tolerance(actual.dtype)
    torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol)


def _reference(norm, x, batch, eps=1e-5):
    """SEGNN's InstanceNorm loop: per irrep copy, centre scalars per graph, divide by the
    root of the graph-mean of the squared component norm (mean over components)."""
    out, ix, iw, ib = [], 0, 0, 0
    for mul, ir in norm.irreps:
        field = x[:, ix:ix + mul * ir.dim].reshape(-1, mul, ir.dim)
        ix += mul * ir.dim
        new = torch.empty_like(field)
        for g in batch.unique():
            f = field[batch == g]
            if ir.l == 0:
                f = f - f.mean(0, keepdim=True)
            var = f.square().mean(-1).mean(0)
            new[batch == g] = f * (norm.weight[iw:iw + mul] / (var + eps).sqrt())[None, :, None]
        iw += mul
        if ir.l == 0 and ir.p == 1:
            new = new + norm.bias[ib:ib + mul][None, :, None]
            ib += mul
        out.append(new.reshape(-1, mul * ir.dim))
    return torch.cat(out, 1)


def test_instance_norm_matches_reference():
    norm = InstanceNorm(IRREPS)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_()
    x = torch.randn(7, norm.irreps.dim) * 3 + 1
    batch = torch.tensor([0, 0, 1, 1, 1, 2, 0])
    _close(norm(x, batch), _reference(norm, x, batch))
    _close(norm(x), _reference(norm, x, torch.zeros(7, dtype=torch.long)))
    assert norm.bias.numel() == 3  # even scalars only: a bias on 0o would break parity


def test_instance_norm_max_and_norm_options():
    x = torch.randn(5, 15)
    out = InstanceNorm(IRREPS, reduce="max", affine=False)(x)
    field = x[:, 4:10].reshape(5, 2, 3)  # the 2x1o copies: max over nodes of mean square is 1 after
    scaled = out[:, 4:10].reshape(5, 2, 3)
    ratio = scaled.square().mean(-1).max(0).values * (1 + 1e-5 / field.square().mean(-1).max(0).values)
    _close(ratio, torch.ones(2))
    out = InstanceNorm("2x1o", normalization="norm", affine=False)(x[:, :6])
    _close(out.reshape(5, 2, 3).square().sum(-1).mean(0), torch.ones(2) - 1e-5 / (1e-5 + x[:, :6].reshape(5, 2, 3)
                                                                                   .square().sum(-1).mean(0)))


def test_instance_norm_equivariant_and_batch_consistent():
    norm = InstanceNorm(IRREPS)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.normal_()
    gen = torch.Generator().manual_seed(0)
    dtype = torch.get_default_dtype()
    graphs = [Data(x=torch.randn(n, 15, generator=gen).to(dtype), num_nodes=n) for n in (3, 5, 1)]
    from torch_geometric.data import Batch

    batch = Batch.from_data_list(graphs)
    run = lambda d: norm(d.x, d.batch)  # noqa: E731
    assert_equivariant(run, batch, "O3", in_types={"x": norm.irreps}, out_types=norm.irreps)
    assert_batch_consistent(run, graphs)


def test_batch_norm_is_e3nn():
    bn = BatchNorm(IRREPS)
    ref = e3nn_nn.BatchNorm(IRREPS)
    x = torch.randn(6, 15)
    _close(bn(x), ref(x))
    assert bn.irreps_in == bn.irreps_out == bn.irreps
    with torch.no_grad():
        bn.weight.fill_(2.0)
    bn.reset_parameters()
    assert torch.equal(bn.weight, torch.ones_like(bn.weight)) and torch.equal(bn.running_var, torch.ones(7))
    gen = torch.Generator().manual_seed(0)
    data = Data(x=torch.randn(6, 15, generator=gen).to(torch.get_default_dtype()), num_nodes=6)
    assert_equivariant(lambda d: bn(d.x), data, "O3", in_types={"x": bn.irreps}, out_types=bn.irreps)


def test_reset_parameters():
    norm = InstanceNorm(IRREPS)
    with torch.no_grad():
        norm.weight.fill_(3.0)
        norm.bias.fill_(3.0)
    norm.reset_parameters()
    assert torch.equal(norm.weight, torch.ones(7)) and torch.equal(norm.bias, torch.zeros(3))
    assert InstanceNorm(IRREPS, affine=False).weight is None


@pytest.mark.parametrize("cls", [InstanceNorm, BatchNorm])
@pytest.mark.parametrize("kwargs, match", [
    (dict(irreps="2x0q"), "irreps"),
    (dict(irreps=""), "empty"),
    (dict(irreps="2x0e", eps=0), "eps"),
    (dict(irreps="2x0e", reduce="sum"), "reduce"),
    (dict(irreps="2x0e", normalization="x"), "normalization"),
])
def test_bad_arguments(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"x must have shape \[N, 15\]"):
        InstanceNorm(IRREPS)(torch.zeros(3, 14))
    with pytest.raises(ValueError, match="batch must have shape"):
        InstanceNorm(IRREPS)(torch.zeros(3, 15), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"x must have shape \[N, 15\]"):
        BatchNorm(IRREPS)(torch.zeros(3, 14))
    with pytest.raises(ValueError, match="momentum"):
        BatchNorm(IRREPS, momentum=2.0)
