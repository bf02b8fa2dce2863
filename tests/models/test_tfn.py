"""TFN model: equivariance with parity and batching (shared mixins) for molecules and the N-body
setting; ForceField(TFN) through EnergyModelTests; the envelope; single atoms, zero-length
edges; bad input; reset, registry, save/load."""
import copy
from pathlib import Path

import pytest
import torch
import yaml
from ase.build import bulk
from torch_geometric.data import Batch, Data

from equigraph.data import from_ase
from equigraph.graph import full_graph
from equigraph.models import MODELS, ForceField, available_models, build_model, load, save
from equigraph.models.tfn import TFN
from equigraph.testing import EnergyModelTests, EquivariantModelTests, assert_smooth_at_cutoff

ROOT = Path(__file__).resolve().parents[2]
BOX = 12.0

# Each variant is built once (float64, after torch.manual_seed(0)), cast once per dtype and
# shared by the tests, which never modify it: building e3nn layers dominates test time.
_BUILT = {}

VARIANTS = {
    "molecule": dict(hidden_irreps="6x0e+3x1o+2x2e", num_layers=2, lmax=2, out_channels=2, interaction_graph=3.0),
    "nbody": dict(hidden_irreps="6x0e+3x1o", num_layers=2, lmax=1, in_channels=1, scalar_inputs=["charges"],
                  vector_inputs=["vel"], positions=True, interaction_graph="full", radial_cutoff=6.0),
    "energy": dict(hidden_irreps="8x0e+4x1o", num_layers=2, lmax=1, out_channels=1, atom_ref=True,
                   interaction_graph=3.0),
}


def _model(name, **changes):
    key = (name, tuple(sorted(changes.items())))
    if key not in _BUILT:
        torch.manual_seed(0)
        _BUILT[key] = TFN(**{**VARIANTS[name], **changes}).double().eval()
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
    return Data(z=torch.randint(1, 10, (n,), generator=gen), pos=_cluster(n, seed))


def _nbody(n, seed):
    gen = torch.Generator().manual_seed(seed)
    dtype = torch.get_default_dtype()
    vel = torch.randn(n, 3, generator=gen).to(dtype)
    charges = torch.randint(0, 2, (n,), generator=gen).to(dtype) * 2 - 1
    return Data(pos=torch.randn(n, 3, generator=gen).to(dtype), vel=vel, x=vel.norm(dim=-1, keepdim=True),
                charges=charges, edge_index=full_graph(num_nodes=n))


class TestMolecule(EquivariantModelTests):
    """Embedding of z, radius graph built by the model, orders up to 2, sum readout."""

    @pytest.fixture
    def model(self):
        return _model("molecule")

    @pytest.fixture
    def data_list(self):
        return [_molecule(4, 0), _molecule(6, 1)]

    def test_outputs(self, model, data_list):
        out = model(data_list[1])
        assert set(out) == set(model.outputs) == {"h", "y", "node_y"}
        assert out["h"].shape == (6, 6 + 9 + 10) and out["y"].shape == (1, 2)
        torch.testing.assert_close(out["node_y"].sum(0, keepdim=True), out["y"])
        assert model.normalizer("y") is model.readout and model.cutoff == 3.0


class TestNBody(EquivariantModelTests):
    """Speed and charge scalars, the velocity as 1o, full graph without envelope, 1o output
    added to the positions."""

    @pytest.fixture
    def model(self):
        return _model("nbody")

    @pytest.fixture
    def data_list(self):
        return [_nbody(5, 0), _nbody(4, 1)]

    def test_outputs(self, model, data_list):
        data = data_list[0]
        out = model(data)
        assert set(out) == set(model.outputs) == {"h", "pos", "vec"}
        torch.testing.assert_close(out["vec"][:, 0], out["pos"] - data.pos)
        assert float(out["vec"].detach().abs().max()) > 1e-3
        assert not model.use_envelope and model.cutoff is None

    def test_inputs_matter(self, model, data_list):
        data = data_list[0]
        ref = model(data)["pos"]
        for key in ("vel", "charges", "x"):
            changed = data.clone()
            changed[key] = -2.0 * data[key] + 0.3
            assert not torch.allclose(model(changed)["pos"], ref), key


def _energy_model(**changes):
    key = ("force_field", tuple(sorted(changes.items())))
    if key not in _BUILT:
        model = copy.deepcopy(_model("energy", **changes))
        with torch.no_grad():
            # O(1) readout weights and references: forces and energies far above the
            # finite-difference tolerances.
            gen = torch.Generator().manual_seed(0)
            for layer in (model.readout.node_net[0], model.readout.node_net[2]):
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen))
            model.readout.atom_ref.copy_(torch.randn(model.readout.atom_ref.shape, generator=gen))
        _BUILT[key] = ForceField(model, stress=True).double().eval()
    return _BUILT[key]


def _box_molecule(n, seed):
    gen = torch.Generator().manual_seed(seed)
    return Data(z=torch.randint(1, 10, (n,), generator=gen), pos=_cluster(n, seed, torch.float64),
                cell=BOX * torch.eye(3, dtype=torch.float64).unsqueeze(0), pbc=torch.zeros(1, 3, dtype=torch.bool))


@pytest.mark.parametrize("dtype", [torch.float64], indirect=True, ids=["float64"])
class TestTFNForceField(EnergyModelTests):
    """ForceField(TFN), 3 Å cutoff with the polynomial envelope; molecules in a box and a
    rattled 2x2x2 Cu supercell."""

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
def test_smoothness_check_catches_tfn_without_envelope():
    model = _energy_model(envelope=False)
    assert not model.model.use_envelope
    with pytest.raises(AssertionError, match="'energy' jumps"):
        assert_smooth_at_cutoff(model, _box_molecule(4, 0), 3.0, keys=["energy", "forces"])


def test_single_atom_and_far_atoms():
    model = _model("molecule")
    lone = Data(z=torch.tensor([6]), pos=torch.tensor([[0.5, -1.0, 2.0]]))
    out = model(lone)
    assert all(bool(torch.isfinite(v).all()) for v in out.values())
    other = _molecule(3, 5)
    other.pos = other.pos + 50.0
    batched = model(Batch.from_data_list([lone, other]))
    torch.testing.assert_close(batched["y"][:1], out["y"])
    # An atom without neighbours inside a molecule: the others do not depend on where it is.
    mol = _molecule(4, 0)
    far = Data(z=torch.cat([mol.z, torch.tensor([7])]), pos=torch.cat([mol.pos, torch.tensor([[30.0, 0, 0]])]))
    moved = far.clone()
    moved.pos = far.pos.clone()
    moved.pos[-1] = torch.tensor([0.0, -40.0, 5.0])
    torch.testing.assert_close(model(far)["node_y"], model(moved)["node_y"])


def test_zero_length_edges():
    data = _molecule(4, 0)
    data.edge_index = torch.tensor([[0, 1, 2, 2], [1, 0, 3, 2]])  # a self-loop on node 2
    with pytest.raises(ValueError, match=r"edge 3 \(neighbour j=2 -> centre i=2\) has zero length"):
        _model("molecule")(data)
    out = _model("molecule", allow_zero_length=True)(data)
    assert all(bool(torch.isfinite(v).all()) for v in out.values())
    # The model checks once; its convolutions are built with validate=False.
    assert not any(conv.validate for conv in _model("molecule").convs)


def _bad(name):
    dtype = torch.get_default_dtype()
    data = _nbody(4, 0)
    if name == "vel":
        del data.vel
    elif name == "vel_nan":
        data.vel[1, 0] = float("nan")
    elif name == "x_width":
        data.x = torch.ones(4, 3, dtype=dtype)
    elif name == "charges":
        data.charges = torch.ones(3, dtype=dtype)
    elif name == "charges_inf":
        data.charges[0] = float("inf")
    elif name == "pos_nan":
        data.pos[0, 1] = float("nan")
    elif name == "empty":
        data = Data(x=torch.zeros(0, 1), pos=torch.zeros(0, 3), vel=torch.zeros(0, 3), charges=torch.zeros(0),
                    edge_index=torch.zeros(2, 0, dtype=torch.long))
    elif name == "edge_index":
        data.edge_index = data.edge_index.clone()
        data.edge_index[1, 2] = 7
    elif name == "shift_no_cell":
        data.shift = torch.zeros(data.edge_index.size(1), 3, dtype=dtype)
    return data


@pytest.mark.parametrize("name, match", [
    ("vel", "data.vel is missing"),
    ("vel_nan", "data.vel contains NaN or inf"),
    ("x_width", r"data.x must have shape \[N=4, in_channels=1\]"),
    ("charges", r"data.charges must have shape \[N=4\]"),
    ("charges_inf", "data.charges contains NaN or inf"),
    ("pos_nan", "NaN or inf"),
    ("empty", "empty"),
    ("edge_index", "7"),
    ("shift_no_cell", "without data.cell"),
])
def test_bad_input(name, match):
    with pytest.raises(ValueError, match=match):
        _model("nbody")(_bad(name))


@pytest.mark.parametrize("kwargs, match", [
    ({"hidden_irreps": "4x0e+2x3o", "lmax": 1},
     r"hidden_irreps \(layer 0\): irreps_out: .*3o cannot be reached .* lmax=1"),
    ({"hidden_irreps": "2x1o"}, "has no even scalars"),
    ({"hidden_irreps": "2x1o+4x0e"}, "hidden_irreps: irreps_out must list scalars first"),
    ({"hidden_irreps": "4x0e+1x1q"}, "hidden_irreps: '4x0e\\+1x1q' is not valid irreps"),
    ({"interaction_graph": "full"}, "radial_cutoff is needed"),
    ({"radial_cutoff": -1.0}, "radial_cutoff must be a number > 0"),
    ({"atom_ref": True}, "atom_ref=True needs a graph readout"),
    ({"num_layers": 0}, "num_layers must be an int >= 1"),
    ({"scalar_inputs": "q"}, "scalar_inputs must be a list of data keys"),
    ({"in_channels": 0}, "in_channels must be an int >= 1"),
    ({"tp_backend": "jax"}, r"tp_backend must be one of \('e3nn', 'cueq'\)"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TFN(**{"hidden_irreps": "4x0e+2x1o", "num_layers": 1, "lmax": 1, **kwargs})


def test_reset_parameters_restores_fresh_init():
    kwargs = dict(hidden_irreps="4x0e+2x1o", num_layers=1, lmax=1, out_channels=1, positions=True)
    torch.manual_seed(5)
    fresh = TFN(**kwargs)
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
    assert not torch.equal(fresh.embedding.weight, state["embedding.weight"])


def test_registry_and_save_load_round_trip(tmp_path):
    assert "tfn" in available_models()
    spec = {"name": "tfn", "hidden_irreps": "4x0e+2x1o", "num_layers": 1, "lmax": 1, "out_channels": 1,
            "atom_ref": True, "interaction_graph": 3.0}
    torch.manual_seed(0)
    model = build_model(spec).to(torch.get_default_dtype())
    assert isinstance(model, TFN)
    model.readout.set_statistics(scale=2.0, shift=-1.0, atom_ref=torch.arange(100.0).unsqueeze(-1))
    again = load(save(model, tmp_path / "tfn.pt"))
    for key, value in model.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key
    mol = _molecule(4, 0)
    torch.testing.assert_close(again(mol)["y"], model(mol)["y"])
    with pytest.raises(ValueError, match="model 'tfn': num_layers must be int"):
        build_model({"name": "tfn", "num_layers": 1.5})


def test_config_model_section_is_valid():
    config = yaml.safe_load((ROOT / "configs" / "nbody_tfn.yaml").read_text())
    spec = dict(config["model"])
    assert spec.pop("name") == "tfn"
    MODELS.check_kwargs("tfn", spec)


def test_repr():
    assert repr(_model("nbody")).startswith("TFN(hidden_irreps=6x0e+3x1o, num_layers=2, lmax=1, out_channels=None, "
                                            "in_channels=1, positions=True, radial_cutoff=6")
