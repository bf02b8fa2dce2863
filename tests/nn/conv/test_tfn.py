"""TFNConv: the TFN equations on its own pieces, E(3) equivariance (open and periodic),
smooth cutoff, zero-length edges, bad input. Float32 and float64 (conftest)."""
import math

import pytest
import torch
from e3nn import o3
from torch_geometric.data import Data

from equigraph.graph import periodic_radius_graph
from equigraph.nn import CosineCutoff, GaussianBasis, edge_vec
from equigraph.nn.conv.tfn import TFNConv
from equigraph.testing import assert_equivariant, default_tolerance

IN, OUT = "4x0e+2x1o", "3x0e+2x1o+1x1e+1x2e"


def _conv(**kwargs):
    options = dict(lmax=2, cutoff=3.0)
    options.update(kwargs)
    torch.manual_seed(0)
    return TFNConv(options.pop("irreps_in", IN), options.pop("irreps_out", OUT), **options).to(
        torch.get_default_dtype())


def _graph(num_nodes=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    dtype = torch.get_default_dtype()
    pos = (torch.randn(num_nodes, 3, generator=gen) * 1.5).to(dtype)
    mask = ~torch.eye(num_nodes, dtype=torch.bool)  # all pairs; the cutoff decides
    i, j = mask.nonzero().t()
    x = torch.randn(num_nodes, o3.Irreps(IN).dim, generator=gen).to(dtype)
    return Data(x=x, pos=pos, edge_index=torch.stack([j, i]))


def _run(conv):
    return lambda d: conv(d.x, d.pos, d.edge_index, d.get("shift"), d.get("cell"), d.get("batch"))


def _close(actual, expected):
    atol, rtol = default_tolerance(actual.dtype)
    torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol)


@pytest.mark.parametrize("options", [{}, {"avg_num_neighbors": 4.0, "self_interaction": False}])
def test_matches_tfn_equations(options):
    conv = _conv(**options)
    data = _graph()
    out = conv(data.x, data.pos, data.edge_index)
    j, i = data.edge_index
    vec = data.pos[j] - data.pos[i]
    r = vec.norm(dim=-1)
    y = o3.spherical_harmonics(conv.irreps_sh, vec, normalize=True, normalization="component")
    weight = conv.radial(conv.radial_basis(r)) * conv.cutoff_fn(r)[:, None]
    msg = conv.tp(data.x[j], y, weight)
    agg = torch.zeros(data.num_nodes, msg.size(1), dtype=msg.dtype).index_add_(0, i, msg)
    expected = conv.linear_out(agg / math.sqrt(options.get("avg_num_neighbors", 1.0)))
    if conv.self_interaction is not None:
        expected = expected + conv.self_interaction(data.x)
    _close(out, expected)
    assert bool((r > conv.cutoff).any())  # some pairs lie beyond the cutoff


@pytest.mark.parametrize("options", [{}, {"lmax": 1, "irreps_out": "2x0e+2x1o", "radial_basis": None,
                                          "radial_hidden": (8, 8)}])
def test_equivariant(options):
    conv = _conv(**options)
    errors = assert_equivariant(_run(conv), _graph(), "E3", in_types={"x": IN, "pos": "point"},
                                out_types=conv.irreps_out)
    assert set(errors) == {"rotation", "reflection", "translation", "permutation"}


def test_periodic_equivariant():
    dtype = torch.get_default_dtype()
    cell = torch.tensor([[[3.0, 0.0, 0.0], [0.4, 2.8, 0.0], [0.3, -0.2, 3.1]]], dtype=dtype)
    pos = torch.tensor([[0.1, 0.2, 0.3], [0.6, 0.5, 0.4], [0.8, 0.1, 0.7]], dtype=dtype) @ cell[0]
    edge_index, shift = periodic_radius_graph(pos, 3.2, cell, torch.tensor([[True, True, True]]))
    conv = _conv(cutoff=3.2)
    x = torch.randn(3, o3.Irreps(IN).dim, generator=torch.Generator().manual_seed(0)).to(dtype)
    data = Data(x=x, pos=pos, edge_index=edge_index, shift=shift, cell=cell)
    assert_equivariant(_run(conv), data, "E3", in_types={"x": IN, "pos": "point", "cell": "cell"},
                       out_types=conv.irreps_out)
    with pytest.raises(ValueError, match="zero length"):  # without shifts, self-images have no direction
        conv(x, pos, edge_index)


def test_edges_beyond_cutoff_contribute_nothing_and_smoothly():
    conv = _conv(radial_basis=GaussianBasis(0.0, 3.0, num_basis=6), cutoff_fn=CosineCutoff(3.0))
    data = _graph(4)
    far = data.clone()
    far.pos[3] = far.pos[3] + 100.0
    without = far.clone()
    keep = (far.edge_index != 3).all(0)
    without.edge_index = far.edge_index[:, keep]
    _close(_run(conv)(far)[:3], _run(conv)(without)[:3])
    # Just inside the cutoff, the messages of a neighbour are already ~0.
    two = Data(x=data.x[:2], pos=torch.tensor([[0.0, 0.0, 0.0], [2.999, 0.0, 0.0]]).to(data.pos.dtype),
               edge_index=torch.tensor([[1, 0], [0, 1]]))
    alone = conv(data.x[:2], two.pos, torch.zeros(2, 0, dtype=torch.long))
    assert (_run(conv)(two) - alone).abs().max() < 1e-5


def test_forces_finite_and_zero_length_edges():
    conv = _conv()
    data = _graph(4)
    data.pos.requires_grad_(True)
    _run(conv)(data).sum().backward()
    assert torch.isfinite(data.pos.grad).all()
    data = _graph(3)
    data.pos = data.pos.detach().clone()
    data.pos[2] = data.pos[1]
    with pytest.raises(ValueError, match=r"edge \d+ \(neighbour j=\d -> centre i=\d\) has zero length"):
        _run(conv)(data)
    allowed = _conv(allow_zero_length=True)
    data.pos.requires_grad_(True)
    out = _run(allowed)(data)
    out.square().sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(data.pos.grad).all()


def test_reset_parameters_restores_fresh_init():
    torch.manual_seed(2)
    fresh = TFNConv(IN, OUT, lmax=2)
    conv = TFNConv(IN, OUT, lmax=2)
    with torch.no_grad():
        for p in conv.parameters():
            p.fill_(7.0)
    torch.manual_seed(2)
    conv.reset_parameters()
    for name, value in fresh.state_dict().items():
        assert torch.equal(conv.state_dict()[name], value), name


def test_irreps_and_repr():
    conv = _conv(avg_num_neighbors=5.0)
    assert conv.irreps_in == o3.Irreps(IN) and conv.irreps_out == o3.Irreps(OUT)
    assert conv.irreps_mid == conv.irreps_mid.sort().irreps
    assert conv.tp.weight_numel == conv.radial[-1].out_features
    assert repr(conv) == f"TFNConv({IN} -> {OUT}, lmax=2, cutoff=3, avg_num_neighbors=5)"


@pytest.mark.parametrize("kwargs, match", [
    ({"irreps_out": "2x3e"}, "2x3e cannot be reached"),
    ({"irreps_in": "2x1q"}, "irreps_in"),
    ({"lmax": -1}, "lmax"),
    ({"cutoff": 0.0}, "cutoff"),
    ({"avg_num_neighbors": -2.0}, "avg_num_neighbors"),
    ({"radial_hidden": (0,)}, "radial_hidden"),
    ({"radial_basis": torch.nn.Identity()}, "num_basis"),
    ({"aggr": "max"}, "aggr"),
    ({"flow": "target_to_source"}, "flow"),
    ({"irreps_in": "4x0e", "irreps_out": "2x1o"}, "self_interaction"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        _conv(**kwargs)


def test_bad_inputs():
    conv = _conv()
    data = _graph()
    with pytest.raises(ValueError, match=r"x must have shape \[N, 10\]"):
        conv(data.x[:, :-1], data.pos, data.edge_index)
    with pytest.raises(ValueError, match="pos must have shape"):
        conv(data.x, data.pos[:-1], data.edge_index)
    with pytest.raises(ValueError, match="empty"):
        conv(data.x[:0], data.pos[:0], data.edge_index[:, :0])
    with pytest.raises(ValueError, match="edge_index"):
        conv(data.x, data.pos, data.edge_index + 10)
    with pytest.raises(ValueError, match="shift"):
        conv(data.x, data.pos, data.edge_index, shift=torch.zeros(3, 3), cell=torch.eye(3))


def test_double_after_float32_build_keeps_float64_coefficients():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        built32 = TFNConv(IN, OUT, lmax=2, cutoff=3.0)
    finally:
        torch.set_default_dtype(previous)
    built64 = TFNConv(IN, OUT, lmax=2, cutoff=3.0).double()
    built64.load_state_dict(built32.state_dict())  # float32 buffers in the state dict are refilled exactly
    built32 = built32.double()
    with torch.random.fork_rng():
        torch.set_default_dtype(torch.float64)
        try:
            data = _graph()
        finally:
            torch.set_default_dtype(previous)
    torch.testing.assert_close(_run(built32)(data), _run(built64)(data), atol=1e-13, rtol=1e-13)


def test_validate_false_skips_the_input_checks(monkeypatch):
    checked, unchecked = _conv(), _conv(validate=False)
    data = _graph()
    expected = _run(checked)(data)

    def fail(*_, **__):
        raise AssertionError("_check_inputs called")

    monkeypatch.setattr(unchecked, "_check_inputs", fail)
    assert torch.equal(_run(unchecked)(data), expected)
    # Zero-length edges are the caller's to check too (the TFN model checks them once).
    data.pos = data.pos.clone()
    data.pos[2] = data.pos[1]
    with pytest.raises(ValueError, match="has zero length"):
        _run(checked)(data)
    assert _run(unchecked)(data).shape == expected.shape
    with pytest.raises(ValueError, match="tp_backend must be one of"):
        _conv(tp_backend="jax")
