"""EGNN model: equivariance and batching (shared mixin), the N-body, QM9 and periodic
configurations, the graph it uses, single atoms, bad input, reset and torch.compile."""
import pytest
import torch
from torch_geometric.data import Batch, Data

from equigraph.graph import FullInteractionGraph, RadiusInteractionGraph, full_graph
from equigraph.models import EGNN
from equigraph.testing import EquivariantModelTests, assert_equivariant, default_tolerance


def _molecule(n, seed):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randint(1, 10, (n,), generator=gen)
    pos = (2.0 * torch.randn(n, 3, generator=gen)).to(torch.get_default_dtype())
    return Data(z=z, pos=pos)


def _nbody(n, seed):
    gen = torch.Generator().manual_seed(seed)
    dtype = torch.get_default_dtype()
    vel = torch.randn(n, 3, generator=gen).to(dtype)
    charges = torch.randint(0, 2, (n,), generator=gen).to(dtype) * 2 - 1
    edge_index = full_graph(num_nodes=n)
    return Data(pos=torch.randn(n, 3, generator=gen).to(dtype), vel=vel, x=vel.norm(dim=-1, keepdim=True),
                edge_index=edge_index, edge_attr=(charges[edge_index[0]] * charges[edge_index[1]]).unsqueeze(-1))


def _crystal(seed):
    gen = torch.Generator().manual_seed(seed)
    dtype = torch.get_default_dtype()
    cell = torch.tensor([[[3.0, 0.0, 0.0], [0.5, 2.9, 0.0], [0.2, 0.3, 3.2]]], dtype=dtype)
    frac = torch.rand(3, 3, generator=gen).to(dtype)
    return Data(z=torch.tensor([3, 8, 8]), pos=frac @ cell[0], cell=cell, pbc=torch.tensor([[True, True, False]]))


def _randomise_coords(model):
    # The reference init makes coordinate steps ~1e-3; larger ones test the geometry.
    with torch.no_grad():
        for conv in model.convs:
            if conv.coord_mlp is not None:
                conv.coord_mlp[2].weight.normal_(0.0, 0.3)
    return model


class TestMolecule(EquivariantModelTests):
    """Embedding of z, radius graph built by the model, graph readout."""

    @pytest.fixture
    def model(self):
        torch.manual_seed(0)
        return _randomise_coords(EGNN(hidden_channels=8, num_layers=2, out_channels=2, interaction_graph=3.0))

    @pytest.fixture
    def data_list(self):
        return [_molecule(4, 0), _molecule(6, 1)]

    def test_outputs(self, model, data_list):
        out = model(data_list[1])
        assert set(out) == {"h", "y", "node_y", "pos", "vec"}
        torch.testing.assert_close(out["node_y"].sum(0, keepdim=True), out["y"])
        assert out["h"].shape == (6, 8) and out["y"].shape == (1, 2)
        assert out["pos"].shape == (6, 3) and out["vec"].shape == (6, 1, 3)
        torch.testing.assert_close(out["vec"][:, 0], out["pos"] - data_list[1].pos)

    def test_unsorted_batch(self, model, data_list):
        batch = Batch.from_data_list(data_list)
        perm = torch.randperm(batch.num_nodes, generator=torch.Generator().manual_seed(0))
        shuffled = Data(z=batch.z[perm], pos=batch.pos[perm], batch=batch.batch[perm])
        shuffled.num_graphs = 2
        out, ref = model(shuffled), model(batch)
        atol, rtol = default_tolerance(torch.get_default_dtype())
        torch.testing.assert_close(out["y"], ref["y"], atol=atol, rtol=rtol)
        torch.testing.assert_close(out["pos"], ref["pos"][perm], atol=atol, rtol=rtol)


class TestNBody(EquivariantModelTests):
    """The paper's N-body EGNN-vel: speed features, charge products, velocities; the data's
    complete graph (``interaction_graph="full"``: no cutoff, no envelope)."""

    @pytest.fixture
    def model(self):
        torch.manual_seed(0)
        return _randomise_coords(EGNN(in_channels=1, edge_dim=1, use_velocity=True, hidden_channels=8, num_layers=2,
                                       interaction_graph="full"))

    @pytest.fixture
    def data_list(self):
        return [_nbody(5, 0), _nbody(4, 1)]

    def test_outputs(self, model, data_list):
        out = model(data_list[0])
        assert set(out) == {"h", "pos", "vec", "vel"}
        assert out["vel"].shape == (5, 3)

    def test_propagate_velocity(self, data_list):
        torch.manual_seed(0)
        model = _randomise_coords(EGNN(in_channels=1, edge_dim=1, use_velocity=True, propagate_velocity=True,
                                       hidden_channels=8, num_layers=2,
                                       interaction_graph="full"))
        assert_equivariant(model, data_list[0])
        torch.manual_seed(0)
        constant = _randomise_coords(EGNN(in_channels=1, edge_dim=1, use_velocity=True, hidden_channels=8,
                                          num_layers=2, interaction_graph="full"))
        assert not torch.allclose(model(data_list[0])["pos"], constant(data_list[0])["pos"])


class TestPeriodic(EquivariantModelTests):
    """Periodic cells: the radius graph with shifts, built by the model."""

    @pytest.fixture
    def model(self):
        torch.manual_seed(0)
        return _randomise_coords(EGNN(hidden_channels=8, num_layers=2, out_channels=1,
                                      interaction_graph=RadiusInteractionGraph(3.5)))

    @pytest.fixture
    def data_list(self):
        return [_crystal(0), _crystal(1)]

    def test_uses_periodic_images(self, model, data_list):
        edge_index, shift = model.interaction_graph.from_data(data_list[0])
        assert shift is not None and bool((shift != 0).any())
        open_data = Data(z=data_list[0].z, pos=data_list[0].pos)
        assert not torch.allclose(model(data_list[0])["y"], model(open_data)["y"])


def test_qm9_configuration():
    torch.manual_seed(0)
    model = EGNN(in_channels=15, hidden_channels=8, num_layers=2, attention=True, update_coords=False,
                 out_channels=1, reduce="sum", graph_mlp=True, interaction_graph="full")
    assert isinstance(model.interaction_graph, FullInteractionGraph)
    data = Batch.from_data_list([Data(x=torch.randn(n, 15), pos=torch.randn(n, 3)) for n in (3, 5)])
    out = model(data)
    assert out["y"].shape == (2, 1)
    assert torch.equal(out["pos"], data.pos)
    assert_equivariant(model, data, out_types={"h": "scalar", "y": "scalar", "pos": "point", "vec": "vector"})


def test_uses_data_edges_when_present():
    torch.manual_seed(0)
    model = _randomise_coords(EGNN(hidden_channels=8, num_layers=2, out_channels=1))
    data = _molecule(5, 0)
    chain = Data(z=data.z, pos=data.pos, edge_index=torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]))
    built = Data(z=data.z, pos=data.pos, edge_index=model.interaction_graph.from_data(data)[0])
    torch.testing.assert_close(model(data)["y"], model(built)["y"])
    assert not torch.allclose(model(chain)["y"], model(data)["y"])


def test_single_atom_is_finite_and_still():
    torch.manual_seed(0)
    model = EGNN(hidden_channels=8, num_layers=2, out_channels=1)
    data = Data(z=torch.tensor([6]), pos=torch.tensor([[0.5, -1.0, 2.0]]))
    out = model(data)
    assert all(torch.isfinite(v).all() for v in out.values())
    assert torch.equal(out["pos"], data.pos)
    # In a batch with a molecule far away, the lone atom's output is the same.
    other = Data(z=torch.tensor([1, 1]), pos=torch.tensor([[50.0, 0.0, 0.0], [50.7, 0.0, 0.0]]))
    batched = model(Batch.from_data_list([data, other]))
    torch.testing.assert_close(batched["y"][:1], out["y"])


def _bad(name):
    dtype = torch.get_default_dtype()
    data = _nbody(4, 0)
    if name == "vel":
        del data.vel
    elif name == "edge_attr_width":
        data.edge_attr = torch.ones(data.edge_index.size(1), 2, dtype=dtype)
    elif name == "edge_attr":
        del data.edge_attr
    elif name == "nan":
        data.pos[2, 1] = float("nan")
    elif name == "inf":
        data.pos[0, 0] = float("inf")
    elif name == "x":
        del data.x
    elif name == "x_nan":
        data.x[1, 0] = float("nan")
    elif name == "edge_attr_inf":
        data.edge_attr[3, 0] = float("-inf")
    elif name == "vel_nan":
        data.vel[0, 2] = float("nan")
    elif name == "empty":
        data = Data(x=torch.zeros(0, 1), pos=torch.zeros(0, 3), vel=torch.zeros(0, 3),
                    edge_index=torch.zeros(2, 0, dtype=torch.long), edge_attr=torch.zeros(0, 1))
    elif name == "shift_no_cell":
        data.shift = torch.zeros(data.edge_index.size(1), 3, dtype=dtype)
    return data


@pytest.mark.parametrize(
    "name, match",
    [
        ("vel", "vel is missing"),
        ("edge_attr_width", "edge_attr must have shape"),
        ("edge_attr", "edge_attr is missing"),
        ("nan", "NaN or inf"),
        ("inf", "NaN or inf"),
        ("x", "x is missing"),
        ("x_nan", "x contains NaN or inf"),
        ("edge_attr_inf", "edge_attr contains NaN or inf"),
        ("vel_nan", "vel contains NaN or inf"),
        ("empty", "empty"),
        ("shift_no_cell", "without data.cell"),
    ],
)
def test_bad_input(name, match):
    model = EGNN(in_channels=1, edge_dim=1, use_velocity=True, hidden_channels=8, num_layers=2)
    with pytest.raises(ValueError, match=match):
        model(_bad(name))


def test_bad_atomic_numbers():
    model = EGNN(hidden_channels=8, num_layers=1, max_z=10)
    with pytest.raises(ValueError, match=r"max_z=10"):
        model(Data(z=torch.tensor([1, 12]), pos=torch.randn(2, 3)))
    with pytest.raises(ValueError, match="z is missing"):
        model(Data(pos=torch.randn(2, 3)))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_layers": 0}, "num_layers"),
        ({"in_channels": 0}, "in_channels"),
        ({"propagate_velocity": True}, "propagate_velocity=True needs use_velocity=True"),
        ({"interaction_graph": "ring"}, "interaction_graph"),
        ({"out_channels": 1, "reduce": "max"}, "reduce"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EGNN(hidden_channels=8, **kwargs)


def test_reset_parameters_restores_fresh_init():
    torch.manual_seed(5)
    fresh = EGNN(hidden_channels=8, num_layers=2, out_channels=1)
    state = {k: v.clone() for k, v in fresh.state_dict().items()}
    with torch.no_grad():
        for p in fresh.parameters():
            p.add_(1.0)
    torch.manual_seed(5)
    fresh.reset_parameters()
    torch.manual_seed(5)
    again = EGNN(hidden_channels=8, num_layers=2, out_channels=1)
    for name, value in again.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], value), name
        assert torch.equal(state[name], value), name


def test_repr():
    text = repr(EGNN(hidden_channels=8, num_layers=2, in_channels=3, edge_dim=1, interaction_graph="full"))
    assert text == ("EGNN(hidden_channels=8, num_layers=2, out_channels=None, in_channels=3, edge_dim=1, "
                    "use_velocity=False, update_coords=True, interaction_graph=FullInteractionGraph(), envelope=False)")


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32], indirect=True)
def test_torch_compile_same_output(dtype):
    torch.manual_seed(0)
    model = _randomise_coords(EGNN(in_channels=1, edge_dim=1, use_velocity=True, hidden_channels=8, num_layers=1))
    data = Batch.from_data_list([_nbody(5, 0), _nbody(5, 1)])
    expected = model(data)
    compiled = torch.compile(model)
    out = compiled(data)
    for key, value in expected.items():
        torch.testing.assert_close(out[key], value, atol=1e-5, rtol=1e-5)


def test_layers_run_unchecked_with_the_same_result():
    # The model validates once and runs its layers unchecked (with a shared neighbour
    # count); chaining the layers' public forward must give the same output.
    torch.manual_seed(0)
    model = EGNN(in_channels=1, edge_dim=1, use_velocity=True, propagate_velocity=True, hidden_channels=8,
                 num_layers=3, interaction_graph="full")
    _randomise_coords(model)
    data = _nbody(6, seed=4)
    data.edge_index = data.edge_index[:, 3:]  # unequal neighbour counts, node 0 fewer
    data.edge_attr = data.edge_attr[3:]
    out = model(data)
    h, pos, vel = model.embedding(data.x), data.pos, data.vel
    for conv in model.convs:
        h, pos, vel = conv(h, pos, data.edge_index, vel=vel, edge_attr=data.edge_attr)
    torch.testing.assert_close(out["pos"], pos, rtol=0, atol=0)
    torch.testing.assert_close(out["h"], h, rtol=0, atol=0)
    torch.testing.assert_close(out["vel"], vel, rtol=0, atol=0)


def test_bad_edge_index_is_reported_once_by_the_model():
    model = EGNN(in_channels=1, edge_dim=1, use_velocity=True, hidden_channels=8, num_layers=2)
    data = _nbody(4, seed=1)
    data.edge_index = data.edge_index.clone()
    data.edge_index[0, 0] = 7
    with pytest.raises(ValueError, match="refers to node 7"):
        model(data)
