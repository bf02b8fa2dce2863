"""SchNet on the model contract: PyG's blocks on equigraph's (periodic) graphs, equal to PyG's
SchNet with the same weights, equivariant, and a smooth potential through ForceField."""
import pytest
import torch
from ase.build import bulk, molecule
from torch_geometric.data import Batch, Data
from torch_geometric.nn.models import SchNet as PyGSchNet

from equigraph.data import from_ase
from equigraph.graph import RadiusInteractionGraph
from equigraph.models import ForceField, build_model
from equigraph.models.schnet import SchNet
from equigraph.testing import EnergyModelTests, assert_equivariant

SMALL = dict(hidden_channels=16, num_filters=16, num_interactions=2, num_gaussians=12)


def _mol(name, dtype):
    return from_ase(molecule(name), dtype=dtype)


def test_outputs_shapes_and_registry(dtype):
    model = build_model({"name": "schnet", **SMALL, "cutoff": 4.0, "atom_ref": True}).to(dtype)
    batch = Batch.from_data_list([_mol("H2O", dtype), _mol("CH4", dtype)])
    out = model(batch)
    assert out["y"].shape == (2, 1) and out["node_y"].shape == (8, 1) and out["h"].shape == (8, 16)
    assert torch.allclose(out["y"][0], out["node_y"][:3].sum(0))
    assert set(model.outputs) == set(out)
    assert model.cutoff == 4.0 and model.interaction_graph.cutoff == 4.0
    assert set(SchNet(**SMALL, out_channels=None, cutoff=3.0).outputs) == {"h"}


def test_equivariant(dtype):
    torch.manual_seed(0)
    model = SchNet(**SMALL, cutoff=3.0).to(dtype).eval()
    batch = Batch.from_data_list([_mol("CH3CH2OH", dtype), _mol("H2O", dtype)])
    assert_equivariant(model, batch)
    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    cu.rattle(0.05, seed=0)
    assert_equivariant(model, from_ase(cu, dtype=dtype))


@pytest.mark.parametrize("readout", ["add", "mean"])
def test_equals_pyg_schnet_with_the_same_weights(dtype, readout):
    torch.manual_seed(0)
    # equigraph's radius graph has PyG's interaction_graph contract (PyG's own needs pyg-lib)
    pyg = PyGSchNet(**SMALL, cutoff=6.0, readout=readout, interaction_graph=RadiusInteractionGraph(6.0)).to(dtype)
    ours = SchNet.from_pyg(pyg)
    assert ours.readout.reduce == {"add": "sum", "mean": "mean"}[readout]
    mols = [_mol("CH3CH2OH", dtype), _mol("H2O", dtype)]
    batch = Batch.from_data_list(mols)
    expected = pyg(batch.z, batch.pos, batch.batch)
    got = ours(batch)["y"]
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    assert torch.allclose(got, expected, atol=tol, rtol=tol)
    assert float(expected.abs().max()) > 1e-3  # a real comparison, not of zeros


def test_from_pyg_statistics_and_unsupported(dtype):
    torch.manual_seed(1)
    atomref = torch.randn(100, 1).to(dtype)
    pyg = PyGSchNet(**SMALL, cutoff=6.0, mean=0.3, std=2.0, atomref=atomref,
                    interaction_graph=RadiusInteractionGraph(6.0)).to(dtype)
    ours = SchNet.from_pyg(pyg)
    data = _mol("CH4", dtype)
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    assert torch.allclose(ours(data)["y"], pyg(data.z, data.pos), atol=tol, rtol=tol)
    with pytest.raises(ValueError, match="dipole"):
        SchNet.from_pyg(PyGSchNet(**SMALL, dipole=True))
    scaled = PyGSchNet(**SMALL)
    scaled.scale = 2.0
    with pytest.raises(ValueError, match="scale"):
        SchNet.from_pyg(scaled)


def test_edges_beyond_the_cutoff_count_for_nothing(dtype):
    torch.manual_seed(0)
    model = SchNet(**SMALL, cutoff=2.5).to(dtype).eval()
    data = _mol("CH3CH2OH", dtype)
    wide = data.clone()
    wide.edge_index = RadiusInteractionGraph(4.0).from_data(data)[0]
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    assert torch.allclose(model(wide)["y"], model(data)["y"], atol=tol)
    assert SchNet.drops_edges_beyond_cutoff
    # Nor do they move atoms: the same forces (the long edges' lengths are held at the cutoff).
    forces = []
    for d in (wide, data):
        pos = d.pos.clone().requires_grad_()
        d = d.clone()
        d.pos = pos
        forces.append(-torch.autograd.grad(model(d)["y"].sum(), pos)[0])
    assert torch.allclose(forces[0], forces[1], atol=tol)


@pytest.mark.parametrize("kwargs, match", [
    (dict(hidden_channels=0), "hidden_channels must be a positive int"),
    (dict(num_gaussians=1), "num_gaussians must be at least 2"),
    (dict(cutoff=-1.0), "cutoff must be a positive number"),
    (dict(out_channels=0), "out_channels must be a positive int or None"),
    (dict(atom_ref=True, out_channels=None), "atom_ref=True needs a graph readout"),
    (dict(interaction_graph="full"), "cosine cutoff needs a radius"),
    (dict(cutoff=5.0, interaction_graph=4.0), "shorter than cutoff=5.0"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SchNet(**{**SMALL, **kwargs})


def test_input_errors(dtype):
    model = SchNet(**SMALL, cutoff=3.0)
    with pytest.raises(ValueError, match=r"data.z must lie in \[0, max_z=100\)"):
        model(Data(z=torch.tensor([120]), pos=torch.zeros(1, 3)))
    with pytest.raises(ValueError, match="data.pos is missing"):
        model(Data(z=torch.tensor([1])))
    full = SchNet(**SMALL, cutoff=3.0, interaction_graph="full")
    assert full(_mol("H2O", dtype))["y"].shape == (1, 1)


# --------------------------------------------------------------------------- potential
# Finite differences need float64: every model and structure here is float64.
def _cluster(n, seed):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randint(1, 10, (n,), generator=gen)
    atoms = []
    while len(atoms) < n:
        x = 1.2 * torch.randn(3, generator=gen, dtype=torch.float64)
        if all(float((x - y).norm()) > 1.0 for y in atoms):
            atoms.append(x)
    return Data(z=z, pos=torch.stack(atoms))


def _potential(stress):
    torch.manual_seed(0)
    schnet = SchNet(**SMALL, cutoff=3.0, atom_ref=True)
    with torch.no_grad():
        # O(1) outputs, so that the absolute tolerances of the kit mean something.
        schnet.readout.node_net[2].weight.normal_(0.0, 1.0)
        schnet.readout.atom_ref.normal_(0.0, 1.0)
    return ForceField(schnet, stress=stress).double().eval()


def _copper():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    atoms.rattle(stdev=0.1, seed=0)
    return from_ase(atoms, dtype=torch.float64)


@pytest.mark.parametrize("dtype", [torch.float64], indirect=True, ids=["float64"])
class TestSchNetForceField(EnergyModelTests):
    """ForceField(SchNet): 3 Å cosine cutoff; a rattled 2x2x2 Cu supercell (7.2 Å). Stress
    is checked on the crystal alone (test_stress_on_a_crystal): molecules have none."""

    @pytest.fixture
    def model(self):
        return _potential(stress=False)

    @pytest.fixture
    def data_list(self):
        return [_cluster(4, 0), _cluster(6, 1)]

    @pytest.fixture
    def periodic_data(self):
        return _copper()

    def test_outputs_are_not_tiny(self, model, periodic_data):
        assert float(model(periodic_data)["forces"].abs().max()) > 0.05


@pytest.mark.parametrize("dtype", [torch.float64], indirect=True, ids=["float64"])
def test_stress_on_a_crystal():
    from equigraph.testing import assert_stress_matches_energy

    model, data = _potential(stress=True), _copper()
    assert float(model(data)["stress"].abs().max()) > 1e-4
    assert_stress_matches_energy(model, data)
