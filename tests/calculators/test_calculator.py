"""The ASE calculator: the model's energy, forces and stress; a neighbour list with a skin that
is exact and rebuilt only when needed; NVE energy conservation of order dt^2; saved models."""
import numpy as np
import pytest
import torch
from ase import units
from ase.build import add_adsorbate, bulk, fcc111, molecule
from ase.calculators.calculator import PropertyNotImplementedError
from ase.md.velocitydistribution import thermalize_momenta
from ase.md.verlet import VelocityVerlet

from equigraph.calculators import EquigraphCalculator
from equigraph.data import from_ase
from equigraph.models import EGNN, ForceField, save
from equigraph.models.schnet import SchNet


def _egnn(cutoff=4.0, **kwargs):
    torch.manual_seed(0)
    egnn = EGNN(hidden_channels=8, num_layers=2, out_channels=1, interaction_graph=cutoff, update_coords=False,
                atom_ref=True, **kwargs)
    with torch.no_grad():
        egnn.readout.node_net[2].weight.normal_(0.0, 1.0)  # forces of O(0.1 eV/Å), not O(1e-3)
        egnn.readout.atom_ref.normal_(0.0, 1.0)
    return ForceField(egnn, stress=True).double().eval()


def _slab():
    atoms = fcc111("Cu", size=(2, 2, 3), vacuum=6.0)
    add_adsorbate(atoms, "O", 1.8, "fcc")
    atoms.pbc = True
    atoms.rattle(0.05, seed=1)
    return atoms


def _reference(model, atoms, stress=True):
    """The model on the graph it builds itself (no neighbour list, no skin)."""
    out = model(from_ase(atoms, dtype=torch.float64, info=False))
    return {k: v.detach() for k, v in out.items()}


@pytest.mark.parametrize("make", [lambda: _egnn(), lambda: _schnet()], ids=["egnn", "schnet"])
def test_energy_forces_stress_equal_the_model(make):
    model = make()
    atoms = _slab()
    calc = EquigraphCalculator(model, skin=1.5)
    atoms.calc = calc
    ref = _reference(model, atoms)
    assert atoms.get_potential_energy() == pytest.approx(float(ref["energy"]), abs=1e-10)
    np.testing.assert_allclose(atoms.get_forces(), ref["forces"].numpy(), atol=1e-10)
    from ase.stress import full_3x3_to_voigt_6_stress

    np.testing.assert_allclose(atoms.get_stress(), full_3x3_to_voigt_6_stress(ref["stress"][0].numpy()), atol=1e-10)
    np.testing.assert_allclose(atoms.get_potential_energies(), ref["node_energy"].numpy(), atol=1e-10)
    assert float(np.abs(atoms.get_forces()).max()) > 1e-2
    # SchNet drops the skin edges itself; EGNN's envelope refuses them, so they are filtered.
    assert calc.filter_edges == ("SchNet" not in repr(model))


def _schnet():
    torch.manual_seed(0)
    schnet = SchNet(hidden_channels=8, num_filters=8, num_interactions=2, num_gaussians=10, cutoff=4.0, atom_ref=True)
    with torch.no_grad():
        schnet.readout.node_net[2].weight.normal_(0.0, 1.0)
    return ForceField(schnet, stress=True).double().eval()


def test_neighbour_list_rebuilt_only_beyond_half_the_skin():
    atoms = _slab()
    calc = EquigraphCalculator(_egnn(), skin=1.0)
    atoms.calc = calc
    atoms.get_forces()
    assert calc.neighbor_list_builds == 1
    atoms.positions[-1] += [0.3, 0.2, 0.0]  # 0.36 Å < skin / 2
    atoms.get_forces()
    assert calc.neighbor_list_builds == 1
    atoms.positions[-1] += [0.2, 0.0, 0.0]  # 0.54 Å from the build
    forces = atoms.get_forces()
    assert calc.neighbor_list_builds == 2
    np.testing.assert_allclose(forces, _reference(calc._potential_stress, atoms)["forces"].numpy(), atol=1e-10)
    atoms.set_cell(atoms.cell * 1.01, scale_atoms=True)  # a new cell: rebuilt
    atoms.get_forces()
    assert calc.neighbor_list_builds == 3


def test_skin_edges_are_filtered_for_models_without_envelope():
    model = _egnn(envelope=False)
    atoms = _slab()
    calc = EquigraphCalculator(model, skin=1.5)
    assert calc.filter_edges
    atoms.calc = calc
    np.testing.assert_allclose(atoms.get_forces(), _reference(model, atoms)["forces"].numpy(), atol=1e-10)
    unfiltered = EquigraphCalculator(model, skin=1.5, filter_edges=False)
    assert abs(unfiltered.get_potential_energy(atoms) - atoms.get_potential_energy()) > 1e-6


@pytest.mark.filterwarnings("ignore:Please use `ase.calculators.fd:FutureWarning")
def test_stress_matches_ase_numerical_stress():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 1, 1))
    atoms.rattle(0.05, seed=0)
    calc = EquigraphCalculator(_egnn(cutoff=3.0))
    atoms.calc = calc
    stress = atoms.get_stress()
    assert float(np.abs(stress).max()) > 1e-3
    np.testing.assert_allclose(stress, calc.calculate_numerical_stress(atoms, d=1e-6), atol=1e-7)


def test_nve_energy_conservation_is_second_order_in_the_time_step():
    model = _egnn()

    def drift(dt_fs, total_fs=30.0):
        atoms = _slab()
        thermalize_momenta(atoms, temperature_K=600, rng=np.random.default_rng(0))
        calc = EquigraphCalculator(model, skin=0.3)
        atoms.calc = calc
        energies = []
        dyn = VelocityVerlet(atoms, timestep=dt_fs * units.fs)
        dyn.attach(lambda: energies.append(atoms.get_total_energy()))
        dyn.run(int(round(total_fs / dt_fs)))
        energies = np.array(energies)
        return float(np.abs(energies - energies[0]).max()), calc.neighbor_list_builds

    coarse, builds = drift(1.0)
    fine, _ = drift(0.5)
    assert builds >= 2  # the list was rebuilt during the run, and the energy is still conserved
    assert 0 < fine < coarse < 1e-3
    assert 3.0 < coarse / fine < 5.0  # Verlet: error ~ dt^2


def test_saved_model_file_and_elements(tmp_path):
    model = _egnn()
    path = save(model, tmp_path / "run" / "model.pt", spec={"name": "force_field", "stress": True, "model": {
        "name": "egnn", "hidden_channels": 8, "num_layers": 2, "out_channels": 1, "interaction_graph": 4.0,
        "update_coords": False, "atom_ref": True}}, metadata={"elements": [8, 29]})
    atoms = _slab()
    expected = EquigraphCalculator(model).get_forces(atoms)
    for source in (path, tmp_path / "run", str(path)):
        np.testing.assert_allclose(EquigraphCalculator(source).get_forces(atoms), expected, atol=1e-12)
    gold = _slab()
    gold.symbols[0] = "Au"
    with pytest.raises(ValueError, match=r"atoms \(AuCu11O\): element Au \(Z=79\) was not in this model's training"):
        EquigraphCalculator(path).get_forces(gold)


def test_energy_model_without_wrapper_and_graph_without_cutoff():
    torch.manual_seed(0)
    egnn = EGNN(hidden_channels=8, num_layers=1, out_channels=1, interaction_graph="full").double().eval()
    calc = EquigraphCalculator(egnn)
    atoms = molecule("H2O")
    forces = calc.get_forces(atoms)
    assert forces.shape == (3, 3) and calc.neighbor_list_builds == 0  # the model builds its own full graph
    np.testing.assert_allclose(forces.sum(0), 0.0, atol=1e-12)
    with pytest.raises(PropertyNotImplementedError, match="periodic cell"):
        calc.get_stress(atoms)


def test_bad_arguments():
    with pytest.raises(ValueError, match="skin: expected a finite number >= 0"):
        EquigraphCalculator(_egnn(), skin=-1.0)
    with pytest.raises(ValueError, match="expected a ForceField or an energy model"):
        EquigraphCalculator(EGNN(hidden_channels=8, num_layers=1))
    with pytest.raises(ValueError, match="model file .* does not exist"):
        EquigraphCalculator("/nonexistent/model.pt")
    with pytest.raises(ValueError, match="expected a model file or a torch.nn.Module"):
        EquigraphCalculator(3)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU is available"):
            EquigraphCalculator(_egnn(), device="cuda")


def test_the_user_path_never_imports_the_trainer(tmp_path, monkeypatch):
    import sys

    model = _egnn()
    path = save(model, tmp_path / "model.pt", spec={"name": "force_field", "stress": True, "model": {
        "name": "egnn", "hidden_channels": 8, "num_layers": 2, "out_channels": 1, "interaction_graph": 4.0,
        "update_coords": False, "atom_ref": True}})
    # None in sys.modules makes any import of the trainer fail from here on.
    for name in [m for m in sys.modules if m == "equigraph.train" or m.startswith("equigraph.train.")] + \
            ["equigraph.train"]:
        monkeypatch.setitem(sys.modules, name, None)
    atoms = _slab()
    atoms.calc = EquigraphCalculator(path)
    assert atoms.get_stress().shape == (6,)
    with pytest.raises(ImportError):
        import equigraph.train  # noqa: F401
