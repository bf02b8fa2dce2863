"""EGNNConv: the reference equations, E(3) equivariance (open and periodic), isolated nodes,
bad input. Runs in float32 and float64 (tests/conftest.py)."""
import pytest
import torch
from torch_geometric.data import Data

from equigraph.graph import periodic_radius_graph
from equigraph.nn import EGNNConv as ExportedEGNNConv
from equigraph.nn.conv import EGNNConv
from equigraph.testing import assert_equivariant, default_tolerance

OPTIONS = [
    {},
    {"edge_dim": 2, "attention": True},
    {"velocity": True, "edge_dim": 1},
    {"coords_agg": "sum", "normalize": True, "tanh": True, "coords_range": 2.5},
    {"update_coords": False, "attention": True, "edge_dim": 1},
    {"residual": False, "out_channels": 5},
]


def _graph(num_nodes=6, p=0.6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    pos = torch.randn(num_nodes, 3, generator=gen).to(torch.get_default_dtype())
    mask = torch.rand(num_nodes, num_nodes, generator=gen) < p
    mask = (mask | mask.t()) & ~torch.eye(num_nodes, dtype=torch.bool)
    i, j = mask.nonzero().t()
    return pos, torch.stack([j, i])


def _inputs(conv, num_nodes=6, seed=0):
    pos, edge_index = _graph(num_nodes, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    dtype = torch.get_default_dtype()
    h = torch.randn(num_nodes, conv.in_channels, generator=gen).to(dtype)
    vel = torch.randn(num_nodes, 3, generator=gen).to(dtype) if conv.velocity else None
    edge_attr = torch.randn(edge_index.size(1), conv.edge_dim, generator=gen).to(dtype) if conv.edge_dim else None
    return h, pos, edge_index, vel, edge_attr


def _reference(conv, h, pos, edge_index, vel=None, edge_attr=None):
    """The reference code's E_GCL / E_GCL_vel forward (vgsatorras/egnn, ``row`` = centre),
    with the concatenated first layer, on the modules of ``conv`` (same layout)."""
    row, col = edge_index[1], edge_index[0]
    coord_diff = pos[row] - pos[col]
    radial = (coord_diff ** 2).sum(1, keepdim=True)
    if conv.normalize:
        coord_diff = coord_diff / (radial.sqrt() + conv.eps)
    inp = [h[row], h[col], radial] + ([edge_attr] if edge_attr is not None else [])
    m = conv.edge_mlp(torch.cat(inp, 1))
    if conv.attention:
        m = m * conv.att_mlp(m)
    new_pos = pos
    if conv.update_coords:
        phi = conv.coord_mlp(m)
        if conv.tanh:
            phi = conv.coords_range * torch.tanh(phi)
        trans = coord_diff * phi
        agg = torch.zeros_like(pos).index_add_(0, row, trans)
        if conv.coords_agg == "mean":
            count = torch.zeros(pos.size(0), 1, dtype=pos.dtype).index_add_(0, row, torch.ones_like(radial))
            agg = agg / count.clamp(min=1)
        new_pos = pos + agg
        if conv.velocity:
            new_pos = new_pos + conv.vel_mlp(h) * vel
    msg = torch.zeros(h.size(0), m.size(1), dtype=h.dtype).index_add_(0, row, m)
    out = conv.node_mlp(torch.cat([h, msg], 1))
    if conv.residual:
        out = h + out
    return out, new_pos


def _close(actual, expected):
    atol, rtol = default_tolerance(actual.dtype)
    torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol)


def _as_module(conv):
    def run(data):
        h, pos, vel = conv(data.x, data.pos, data.edge_index, vel=data.get("vel"), edge_attr=data.get("edge_attr"),
                           shift=data.get("shift"), cell=data.get("cell"), batch=data.get("batch"))
        out = {"h": h, "pos": pos}
        if vel is not None:
            out["vel"] = vel
        return out

    return run


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "default")
def test_matches_reference_equations(options):
    torch.manual_seed(0)
    conv = EGNNConv(4, 8, **options)
    with torch.no_grad():  # non-trivial coordinate weights (the init is tiny on purpose)
        if conv.coord_mlp is not None:
            conv.coord_mlp[2].weight.normal_()
    h, pos, edge_index, vel, edge_attr = _inputs(conv)
    out, new_pos, new_vel = conv(h, pos, edge_index, vel=vel, edge_attr=edge_attr)
    ref_out, ref_pos = _reference(conv, h, pos, edge_index, vel, edge_attr)
    _close(out, ref_out)
    _close(new_pos, ref_pos)
    if conv.velocity:
        _close(new_vel, new_pos - pos)
    else:
        assert new_vel is None
    if not conv.update_coords:
        assert torch.equal(new_pos, pos)


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "default")
def test_equivariant(options):
    torch.manual_seed(0)
    conv = EGNNConv(4, 8, **options)
    with torch.no_grad():
        if conv.coord_mlp is not None:
            conv.coord_mlp[2].weight.normal_()
    h, pos, edge_index, vel, edge_attr = _inputs(conv)
    data = Data(x=h, pos=pos, edge_index=edge_index)
    if vel is not None:
        data.vel = vel
    if edge_attr is not None:
        data.edge_attr = edge_attr
    errors = assert_equivariant(_as_module(conv), data)
    assert set(errors) == {"rotation", "reflection", "translation", "permutation"}


def test_periodic_equivariant():
    # A small triclinic cell whose cutoff reaches the neighbouring images (and self-images).
    dtype = torch.get_default_dtype()
    cell = torch.tensor([[[3.0, 0.0, 0.0], [0.4, 2.8, 0.0], [0.3, -0.2, 3.1]]], dtype=dtype)
    frac = torch.tensor([[0.1, 0.2, 0.3], [0.6, 0.5, 0.4], [0.8, 0.1, 0.7]], dtype=dtype)
    pos = frac @ cell[0]
    edge_index, shift = periodic_radius_graph(pos, 3.2, cell, torch.tensor([[True, True, True]]))
    assert bool((shift != 0).any()) and bool((edge_index[0] == edge_index[1]).any())
    torch.manual_seed(0)
    conv = EGNNConv(4, 8, edge_dim=0)
    with torch.no_grad():
        conv.coord_mlp[2].weight.normal_()
    data = Data(x=torch.randn(3, 4), pos=pos, edge_index=edge_index, shift=shift, cell=cell)
    assert_equivariant(_as_module(conv), data)
    # The coordinate update uses the image vectors, not raw position differences.
    out_pos = conv(data.x, pos, edge_index, shift=shift, cell=cell)[1]
    raw_pos = conv(data.x, pos, edge_index)[1]
    assert not torch.allclose(out_pos, raw_pos)


def test_isolated_nodes_get_zero_messages():
    torch.manual_seed(0)
    conv = EGNNConv(4, 8, edge_dim=1)
    h, pos = torch.randn(3, 4), torch.randn(3, 3)
    edge_index = torch.tensor([[0], [1]])  # node 2 has no neighbours, node 0 receives nothing
    out, new_pos, _ = conv(h, pos, edge_index, edge_attr=torch.ones(1, 1))
    alone = conv(h[2:], pos[2:], torch.empty(2, 0, dtype=torch.long), edge_attr=torch.ones(0, 1))
    zero_msg = h + conv.node_mlp(torch.cat([h, torch.zeros(3, 8)], 1))
    assert torch.isfinite(out).all()
    _close(out[[0, 2]], zero_msg[[0, 2]])
    _close(alone[0], zero_msg[2:])
    assert torch.equal(new_pos[[0, 2]], pos[[0, 2]]) and torch.equal(alone[1], pos[2:])
    # With velocities a lone node still moves by phi_v(h) v.
    conv_v = EGNNConv(4, 8, velocity=True)
    vel = torch.randn(1, 3)
    _, moved, new_vel = conv_v(h[:1], pos[:1], torch.empty(2, 0, dtype=torch.long), vel=vel)
    _close(moved - pos[:1], conv_v.vel_mlp(h[:1]) * vel)
    _close(new_vel, moved - pos[:1])


def test_coincident_points_finite_gradients():
    conv = EGNNConv(4, 8, normalize=True)
    h = torch.randn(2, 4)
    pos = torch.zeros(2, 3, requires_grad=True)
    out, new_pos, _ = conv(h, pos, torch.tensor([[0, 1], [1, 0]]))
    (out.sum() + new_pos.sum()).backward()
    assert torch.isfinite(pos.grad).all()


def test_reset_parameters_restores_fresh_init():
    options = dict(edge_dim=1, attention=True, velocity=True)
    torch.manual_seed(3)
    fresh = EGNNConv(4, 8, **options)
    conv = EGNNConv(4, 8, **options)
    with torch.no_grad():
        for p in conv.parameters():
            p.fill_(7.0)
    torch.manual_seed(3)
    conv.reset_parameters()
    for name, value in fresh.state_dict().items():
        assert torch.equal(conv.state_dict()[name], value), name
    # The split first layer keeps the init bound of the single Linear it replaces, and
    # the coordinate weights start tiny (reference code).
    bound = 1 / (2 * 4 + 1 + 1) ** 0.5
    weight = conv.edge_mlp[0].weight
    assert 0.8 * bound < weight.abs().max() <= bound
    assert conv.coord_mlp[2].weight.abs().max() < 1e-3


def test_exported_and_repr():
    assert ExportedEGNNConv is EGNNConv
    conv = EGNNConv(4, 8, edge_dim=2, attention=True)
    assert repr(conv) == "EGNNConv(4, 4, hidden_channels=8, edge_dim=2, attention, coords_agg='mean')"
    assert conv.flow == "source_to_target"


def _call(conv, **overrides):
    h, pos, edge_index, vel, edge_attr = _inputs(conv)
    args = dict(h=h, pos=pos, edge_index=edge_index, vel=vel, edge_attr=edge_attr)
    args.update(overrides)
    return conv(**args)


@pytest.mark.parametrize(
    "options, overrides, match",
    [
        ({"velocity": True}, {"vel": None}, "vel is missing"),
        ({}, {"vel": torch.zeros(6, 3)}, "velocity=False"),
        ({"velocity": True}, {"vel": torch.zeros(5, 3)}, "vel must have the shape"),
        ({"velocity": True}, {"vel": torch.full((6, 3), float("nan"))}, "vel contains NaN"),
        ({"edge_dim": 2}, {"edge_attr": None}, "edge_attr is missing"),
        ({"edge_dim": 2}, {"edge_attr": "width3"}, "edge_attr must have shape"),
        ({}, {"edge_attr": "width3"}, "edge_dim=0"),
        ({}, {"pos": "nan"}, "NaN or inf"),
        ({}, {"pos": "inf"}, "NaN or inf"),
        ({}, {"pos": torch.zeros(5, 3)}, "pos must have shape"),
        ({}, {"h": torch.zeros(0, 4), "pos": torch.zeros(0, 3)}, "empty"),
        ({}, {"h": torch.zeros(6, 3)}, "h must have shape"),
        ({}, {"edge_index": torch.zeros(3, 4, dtype=torch.long)}, "edge_index must have shape"),
        ({}, {"shift": torch.zeros(2, 3)}, "shift must have shape"),
    ],
)
def test_bad_input(options, overrides, match):
    conv = EGNNConv(4, 8, **options)
    h, pos, edge_index, vel, edge_attr = _inputs(conv)
    if overrides.get("edge_attr") == "width3":
        overrides["edge_attr"] = torch.zeros(edge_index.size(1), 3)
    if isinstance(overrides.get("pos"), str):
        bad = pos.clone()
        bad[1, 2] = float(overrides["pos"])
        overrides["pos"] = bad
    with pytest.raises(ValueError, match=match):
        _call(conv, **overrides)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"out_channels": 5}, "residual=True needs out_channels == in_channels"),
        ({"coords_agg": "max"}, "coords_agg"),
        ({"velocity": True, "update_coords": False}, "velocity=True needs update_coords=True"),
        ({"aggr": "mean"}, "aggr"),
        ({"flow": "target_to_source"}, "flow"),
        ({"edge_dim": -1}, "edge_dim"),
        ({"eps": 0.0}, "eps"),
        ({"coords_range": float("inf")}, "coords_range"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EGNNConv(4, 8, **kwargs)
