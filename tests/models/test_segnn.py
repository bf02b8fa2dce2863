"""SEGNN model: equivariance with parity and batching (shared mixins) for molecules, the N-body
configuration and steerable graph outputs; ForceField(SEGNN) through EnergyModelTests; the
envelope; isolated nodes, single atoms, zero-length edges; bad input; reset, registry, save/load."""
import copy
from pathlib import Path

import pytest
import torch
import yaml
from ase.build import bulk
from torch_geometric.data import Batch, Data

from equigraph.data import from_ase
from equigraph.graph import full_graph
from equigraph.models import ForceField, MODELS, available_models, build_model, load, save
from equigraph.models.segnn import SEGNN
from equigraph.nn.conv.segnn import SEGNNConv
from equigraph.testing import EnergyModelTests, EquivariantModelTests, assert_equivariant, assert_smooth_at_cutoff

ROOT = Path(__file__).resolve().parents[2]
BOX = 12.0

# Building (and copying) the e3nn tensor products dominates a test's time: each variant is
# built once (in float64, after torch.manual_seed(0)), cast once per dtype, and shared by the
# tests, which never modify it.
_BUILT = {}

VARIANTS = {
    "molecule": dict(hidden_channels=8, num_layers=2, lmax_h=2, lmax_attr=2, out_channels=2, graph_mlp=False,
                     norm="instance", distance="squared_length", interaction_graph=3.0),
    "nbody": dict(irreps_in="1x0e", vector_inputs=["pos", "vel"], attribute_vectors=["vel"], edge_dim=1,
                  distance="length", lmax_h=1, lmax_attr=1, hidden_channels=8, num_layers=2, irreps_out="1x1o",
                  reduce=None, positions=True, normalization="integral", interaction_graph="full"),
    "graph_irreps": dict(irreps_in="2x0e", scalar_inputs=["charges"], hidden_channels=8, num_layers=1, lmax_h=1,
                         lmax_attr=2, irreps_out="1x1o+1x0e", reduce="mean", norm="batch", interaction_graph=3.0),
    "energy": dict(hidden_channels=8, num_layers=2, lmax_h=1, lmax_attr=2, out_channels=1, reduce="sum",
                   graph_mlp=False, distance="length", atom_ref=True, interaction_graph=3.0),
}


def _model(name, **changes):
    key = (name, tuple(sorted(changes.items())))
    if key not in _BUILT:
        torch.manual_seed(0)
        _BUILT[key] = SEGNN(**{**VARIANTS[name], **changes}).double().eval()
    dtype = torch.get_default_dtype()
    if key + (dtype,) not in _BUILT:
        _BUILT[key + (dtype,)] = _BUILT[key] if dtype == torch.float64 else copy.deepcopy(_BUILT[key]).to(dtype)
    return _BUILT[key + (dtype,)]


def _cluster(n, seed, dtype=None):
    # a compact cluster (every atom has neighbours within 3 Å), no pair closer than 1 Å
    gen = torch.Generator().manual_seed(seed)
    atoms = []
    while len(atoms) < n:
        x = 1.2 * torch.randn(3, generator=gen, dtype=torch.float64)
        if all(float((x - y).norm()) > 1.0 for y in atoms):
            atoms.append(x)
    return torch.stack(atoms).to(dtype or torch.get_default_dtype())


def _molecule(n, seed):
    gen = torch.Generator().manual_seed(seed)
    dtype = torch.get_default_dtype()
    return Data(z=torch.randint(1, 10, (n,), generator=gen), pos=_cluster(n, seed),
                x=torch.randn(n, 2, generator=gen).to(dtype), charges=torch.randn(n, generator=gen).to(dtype))


def _nbody(n, seed):
    gen = torch.Generator().manual_seed(seed)
    dtype = torch.get_default_dtype()
    vel = torch.randn(n, 3, generator=gen).to(dtype)
    charges = torch.randint(0, 2, (n,), generator=gen).to(dtype) * 2 - 1
    edge_index = full_graph(num_nodes=n)
    return Data(pos=torch.randn(n, 3, generator=gen).to(dtype), vel=vel, x=vel.norm(dim=-1, keepdim=True),
                edge_index=edge_index, edge_attr=(charges[edge_index[0]] * charges[edge_index[1]]).unsqueeze(-1))


class TestMolecule(EquivariantModelTests):
    """One-hot of z, radius graph built by the model, orders up to 2, instance norm, sum readout."""

    @pytest.fixture
    def model(self):
        return _model("molecule")

    @pytest.fixture
    def data_list(self):
        return [_molecule(4, 0), _molecule(6, 1)]

    def test_outputs(self, model, data_list):
        out = model(data_list[1])
        assert set(out) == set(model.outputs) == {"h", "y", "node_y"}
        assert out["h"].shape == (6, model.hidden_irreps.dim) and out["y"].shape == (1, 2)
        torch.testing.assert_close(out["node_y"].sum(0, keepdim=True), out["y"])
        assert str(model.hidden_irreps) == "3x0e+3x1o+3x2e"  # weight-balanced against 8 scalars
        assert model.outputs["h"].type == model.hidden_irreps


class TestNBody(EquivariantModelTests):
    """The paper's N-body setting: speed, centred position and velocity inputs, the velocity's
    harmonics in the node attributes, |r| and q_i q_j as message features, a 1o displacement."""

    @pytest.fixture
    def model(self):
        return _model("nbody")

    @pytest.fixture
    def data_list(self):
        return [_nbody(5, 0), _nbody(4, 1)]

    def test_outputs(self, model, data_list):
        data = data_list[0]
        out = model(data)
        assert set(out) == set(model.outputs) == {"h", "y", "pos", "vec"}
        torch.testing.assert_close(out["pos"], data.pos + out["y"])
        torch.testing.assert_close(out["vec"][:, 0], out["y"])
        assert float(out["y"].detach().abs().max()) > 1e-3

    def test_inputs_matter(self, model, data_list):
        data = data_list[0]
        ref = model(data)["pos"]
        for key in ("vel", "edge_attr", "x"):
            changed = data.clone()
            changed[key] = -2.0 * data[key] + 0.3
            assert not torch.allclose(model(changed)["pos"], ref), key


class TestGraphIrreps(EquivariantModelTests):
    """Steerable graph-level output (mean pooling, post-pool tensor products), data.x and a
    scalar input, batch norm in eval mode."""

    @pytest.fixture
    def model(self):
        return _model("graph_irreps")

    @pytest.fixture
    def data_list(self):
        return [_molecule(5, 2), _molecule(3, 3)]

    def test_outputs(self, model, data_list):
        out = model(Batch.from_data_list(data_list))
        assert out["y"].shape == (2, 4) and model.outputs["y"].type == model.irreps_out
        assert model.outputs["y"].level == "graph" and model.normalizer("y") is None


def _energy_model(**changes):
    key = ("force_field", tuple(sorted(changes.items())))
    if key not in _BUILT:
        _BUILT[key] = _scaled_force_field(copy.deepcopy(_model("energy", **changes)))
    return _BUILT[key]


def _scaled_force_field(model):
    with torch.no_grad():
        # The default init gives forces ~1e-2 eV/Å; O(1) weights and references make every
        # check meaningful in absolute terms.
        gen = torch.Generator().manual_seed(0)
        for layer in (model.readout.node_net[0], model.readout.node_net[2]):
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen))
        model.pre_pool2.tp.weight.mul_(3.0)
        model.readout.atom_ref.copy_(torch.randn(model.readout.atom_ref.shape, generator=gen))
    return ForceField(model, stress=True).double().eval()


def _box_molecule(n, seed):
    gen = torch.Generator().manual_seed(seed)
    return Data(z=torch.randint(1, 10, (n,), generator=gen), pos=_cluster(n, seed, torch.float64),
                cell=BOX * torch.eye(3, dtype=torch.float64).unsqueeze(0), pbc=torch.zeros(1, 3, dtype=torch.bool))


@pytest.mark.parametrize("dtype", [torch.float64], indirect=True, ids=["float64"])
class TestSEGNNForceField(EnergyModelTests):
    """ForceField(SEGNN), 3 Å cutoff with the envelope; molecules in a box and a rattled 2x2x2
    Cu supercell (stress, lattice translations, periodic images)."""

    @pytest.fixture
    def model(self):
        return _energy_model()

    @pytest.fixture
    def data_list(self):
        return [_box_molecule(4, 0), _box_molecule(6, 1)]

    @pytest.fixture
    def periodic_data(self):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
        atoms.rattle(stdev=0.1, seed=0)
        return from_ase(atoms, dtype=torch.float64)

    def test_outputs_are_not_tiny(self, model, data_list, periodic_data):
        assert float(model(periodic_data)["forces"].abs().max()) > 0.1
        assert float(model(data_list[1])["forces"].abs().max()) > 0.1


@pytest.mark.parametrize("dtype", [torch.float64], indirect=True, ids=["float64"])
def test_smoothness_check_catches_segnn_without_envelope():
    model = _energy_model(envelope=False)
    assert model.model.envelope is None
    with pytest.raises(AssertionError, match="'energy' jumps"):
        assert_smooth_at_cutoff(model, _box_molecule(4, 0), 3.0, keys=["energy", "forces"])


def test_weighted_messages_with_unit_weights_equal_segnnconv():
    model = _model("energy")
    conv = model.convs[0]
    # The model validates its inputs once per forward and runs plain SEGNNConv layers unchecked.
    assert type(conv) is SEGNNConv and not conv.validate
    plain = SEGNNConv(conv.irreps_in, conv.irreps_hidden, conv.irreps_out, conv.irreps_edge_attr,
                      conv.irreps_node_attr, additional_message_irreps=conv.additional_message_irreps)
    plain.load_state_dict(conv.state_dict())
    plain.to(torch.get_default_dtype())
    n, e = 5, 8
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, conv.irreps_in.dim, generator=gen).to(torch.get_default_dtype())
    edge_index = torch.randint(0, n, (2, e), generator=gen)
    edge_attr = torch.randn(e, conv.irreps_edge_attr.dim, generator=gen).to(x.dtype)
    node_attr = torch.randn(n, conv.irreps_node_attr.dim, generator=gen).to(x.dtype)
    extra = torch.randn(e, 1, generator=gen).to(x.dtype)
    expected = plain(x, edge_index, edge_attr, node_attr, extra)
    torch.testing.assert_close(conv(x, edge_index, edge_attr, node_attr, extra, edge_weight=torch.ones(e, 1)),
                               expected)
    none = conv(x, edge_index, edge_attr, node_attr, extra, edge_weight=torch.zeros(e, 1))
    torch.testing.assert_close(none, plain(x, edge_index[:, :0], edge_attr[:0], node_attr, extra[:0]))


def test_single_atom_and_isolated_node_are_defined():
    model = _model("molecule")
    lone = Data(z=torch.tensor([6]), pos=torch.tensor([[0.5, -1.0, 2.0]]))
    out = model(lone)
    assert all(bool(torch.isfinite(v).all()) for v in out.values())
    # A molecule with an atom far from the others: its node attribute is the trivial one and
    # the molecule's output does not depend on where that atom is.
    mol = _molecule(4, 0)
    far = Data(z=torch.cat([mol.z, torch.tensor([7])]), pos=torch.cat([mol.pos, torch.tensor([[30.0, 0, 0]])]))
    moved = far.clone()
    moved.pos = far.pos.clone()
    moved.pos[-1] = torch.tensor([0.0, -40.0, 5.0])
    torch.testing.assert_close(model(far)["node_y"], model(moved)["node_y"])
    # Batched beside another molecule, the lone atom keeps its output.
    other = _molecule(3, 5)
    other.pos = other.pos + 50.0
    batched = model(Batch.from_data_list([Data(z=lone.z, pos=lone.pos), Data(z=other.z, pos=other.pos)]))
    torch.testing.assert_close(batched["y"][:1], out["y"])


def test_zero_length_edges():
    model = _model("molecule")
    data = _molecule(4, 0)
    data.edge_index = torch.tensor([[0, 1, 2, 2], [1, 0, 3, 2]])  # a self-loop on node 2
    with pytest.raises(ValueError, match=r"edge 3 \(neighbour j=2 -> centre i=2\) has zero length"):
        model(data)
    allowed = _model("molecule", allow_zero_length=True)
    out = allowed(data)
    assert all(bool(torch.isfinite(v).all()) for v in out.values())


def _bad(name):
    dtype = torch.get_default_dtype()
    data = _nbody(4, 0)
    if name == "vel":
        del data.vel
    elif name == "vel_shape":
        data.vel = data.vel[:, :2]
    elif name == "vel_nan":
        data.vel[1, 0] = float("nan")
    elif name == "x_width":
        data.x = torch.ones(4, 3, dtype=dtype)
    elif name == "x":
        del data.x
    elif name == "edge_attr":
        del data.edge_attr
    elif name == "edge_attr_width":
        data.edge_attr = torch.ones(data.edge_index.size(1), 2, dtype=dtype)
    elif name == "edge_attr_inf":
        data.edge_attr[0, 0] = float("inf")
    elif name == "pos_nan":
        data.pos[0, 1] = float("nan")
    elif name == "empty":
        data = Data(x=torch.zeros(0, 1), pos=torch.zeros(0, 3), vel=torch.zeros(0, 3),
                    edge_index=torch.zeros(2, 0, dtype=torch.long), edge_attr=torch.zeros(0, 1))
    elif name == "edge_index":
        data.edge_index = data.edge_index.clone()
        data.edge_index[0, 0] = 9
    elif name == "dtype":
        data.pos = data.pos.to(torch.float16)
    return data


@pytest.mark.parametrize("name, match", [
    ("vel", "data.vel is missing"),
    ("vel_shape", r"data.vel must have shape \[N=4, 3\]"),
    ("vel_nan", "data.vel contains NaN or inf"),
    ("x_width", r"data.x must have shape \[N=4, 1\] to match irreps_in=1x0e"),
    ("x", "data.x is missing"),
    ("edge_attr", "data.edge_attr is missing"),
    ("edge_attr_width", "data.edge_attr must have shape"),
    ("edge_attr_inf", "data.edge_attr contains NaN or inf"),
    ("pos_nan", "NaN or inf"),
    ("empty", "empty"),
    ("edge_index", "refers to node 9"),
    ("dtype", "data.pos is torch.float16"),
])
def test_bad_input(name, match):
    with pytest.raises(ValueError, match=match):
        _model("nbody")(_bad(name))


def test_bad_atomic_numbers_and_scalar_inputs():
    model = _model("graph_irreps")
    data = _molecule(3, 0)
    del data.charges
    with pytest.raises(ValueError, match="data.charges is missing"):
        model(data)
    data.charges = torch.ones(2)
    with pytest.raises(ValueError, match=r"data.charges must have shape \[N=3\]"):
        model(data)
    with pytest.raises(ValueError, match=r"data.z must lie in \[0, max_z=100\)"):
        _model("molecule")(Data(z=torch.tensor([1, 120]), pos=torch.randn(2, 3)))


@pytest.mark.parametrize("kwargs, match", [
    ({"irreps_in": "1x3o", "lmax_h": 1, "lmax_attr": 1}, r"irreps_in: 1x3o \(order l=3\) reaches none of the hidden"),
    ({"irreps_in": "2x1q"}, "irreps_in: '2x1q' is not valid irreps"),
    ({"lmax_h": 2, "lmax_attr": 1, "irreps_in": "1x0e"}, r"hidden irreps .*2e cannot be reached"),
    ({"hidden_irreps": "4x1o+4x0e"}, "hidden_irreps must be sorted"),
    ({"num_layers": 0}, "num_layers must be an int >= 1"),
    ({"out_channels": 1, "irreps_out": "1x1o"}, "not both"),
    ({"positions": True, "irreps_out": "1x0e", "reduce": None}, 'positions=True needs irreps_out="1x1o"'),
    ({"positions": True, "irreps_out": "1x1o"}, "reduce=None"),
    ({"atom_ref": True}, "atom_ref=True needs a graph readout"),
    ({"distance": "manhattan"}, "distance must be one of"),
    ({"reduce": "max"}, "reduce must be one of"),
    ({"subspace": "random"}, "subspace must be one of"),
    ({"vector_inputs": "vel"}, "vector_inputs must be a list of data keys"),
    ({"scalar_inputs": ["q", "q"]}, "scalar_inputs lists a key twice"),
    ({"norm": "layer"}, "norm must be one of"),
    ({"interaction_graph": "ring"}, "interaction_graph"),
    ({"tp_backend": "jax"}, r"tp_backend must be one of \('e3nn', 'cueq'\)"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SEGNN(**{"hidden_channels": 4, "num_layers": 1, **kwargs})


def test_reset_parameters_restores_fresh_init():
    kwargs = dict(hidden_channels=4, num_layers=1, out_channels=1, interaction_graph=3.0)
    torch.manual_seed(5)
    fresh = SEGNN(**kwargs)
    state = {k: v.clone() for k, v in fresh.state_dict().items()}
    with torch.no_grad():
        for p in fresh.parameters():
            p.add_(1.0)
    torch.manual_seed(5)
    fresh.reset_parameters()
    for name, value in fresh.state_dict().items():
        assert torch.equal(state[name], value), name
    torch.manual_seed(6)
    fresh.reset_parameters()
    assert not torch.equal(fresh.embedding.tp.weight, state["embedding.tp.weight"])


def test_registry_and_save_load_round_trip(tmp_path):
    assert "segnn" in available_models()
    spec = {"name": "segnn", "hidden_channels": 4, "num_layers": 1, "lmax_attr": 2, "out_channels": 1,
            "atom_ref": True, "interaction_graph": 3.0, "vector_inputs": []}
    torch.manual_seed(0)
    model = build_model(spec).to(torch.get_default_dtype())
    assert isinstance(model, SEGNN)
    model.readout.set_statistics(scale=2.0, shift=-1.0, atom_ref=torch.arange(100.0).unsqueeze(-1))
    again = load(save(model, tmp_path / "segnn.pt"))
    for key, value in model.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key
    mol = _molecule(4, 0)
    torch.testing.assert_close(again(mol)["y"], model(mol)["y"])
    with pytest.raises(ValueError, match="model 'segnn': hidden_channels must be int"):
        build_model({"name": "segnn", "hidden_channels": "8"})


@pytest.mark.parametrize("path", ["nbody_segnn.yaml", "qm9_segnn.yaml", "qm9_segnn_cpu.yaml"])
def test_config_model_sections_are_valid(path):
    # Validates the arguments (names, simple types) without building the paper-sized models.
    config = yaml.safe_load((ROOT / "configs" / path).read_text())
    spec = dict(config["model"])
    assert spec.pop("name") == "segnn"
    MODELS.check_kwargs("segnn", spec)


def test_repr():
    text = repr(_model("nbody"))
    assert text.startswith("SEGNN(irreps_in=1x0e, hidden_irreps=4x0e+4x1o, num_layers=2, lmax_attr=1, "
                           "irreps_out=1x1o, reduce=None")


def test_equivariant_periodic_with_shifts():
    model = _model("molecule")
    atoms = bulk("NaCl", "rocksalt", a=4.0)
    atoms.rattle(0.1, seed=0)
    data = from_ase(atoms, dtype=torch.get_default_dtype())
    edge_index, shift = model.interaction_graph.from_data(data)
    assert shift is not None and bool((shift != 0).any())
    assert_equivariant(model, data)
