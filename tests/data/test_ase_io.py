import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import fcc111, molecule
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.collections import g2
from ase.io import write
from torch_geometric.data import Batch

from equigraph.data import keys
from equigraph.data.ase_io import from_ase, read, to_ase


def _cu_slab():
    slab = fcc111("Cu", size=(2, 2, 3), vacuum=6.0)
    slab.rattle(0.05, seed=1)
    slab.calc = EMT()
    energy, forces, stress = slab.get_potential_energy(), slab.get_forces(), slab.get_stress()
    return slab, energy, forces, stress


@pytest.mark.parametrize("name", ["H2O", "CH4", "C6H6", "CH3CH2OH", "NH3", "CO2", "HCN", "C2H4"])
def test_g2_round_trip(name):
    atoms = g2[name]
    data = from_ase(atoms, dtype=torch.float64)
    assert data[keys.Z].dtype == torch.long and data[keys.Z].tolist() == atoms.numbers.tolist()
    assert data[keys.POS].shape == (len(atoms), 3)
    assert data[keys.CELL].shape == (1, 3, 3) and data[keys.PBC].shape == (1, 3)
    back = to_ase(data)
    assert back.get_chemical_symbols() == atoms.get_chemical_symbols()
    np.testing.assert_allclose(back.positions, atoms.positions, atol=1e-12)
    assert (back.pbc == atoms.pbc).all()


def test_periodic_slab_with_emt_results_round_trip():
    slab, energy, forces, stress = _cu_slab()
    data = from_ase(slab, dtype=torch.float64)
    assert data[keys.PBC].tolist() == [[True, True, False]]
    assert data[keys.ENERGY].shape == (1,) and data[keys.ENERGY].item() == pytest.approx(energy)
    np.testing.assert_allclose(data[keys.FORCES].numpy(), forces)
    assert data[keys.STRESS].shape == (1, 3, 3)
    # ASE's Voigt order is xx yy zz yz xz xy.
    full = data[keys.STRESS][0].numpy()
    np.testing.assert_allclose([full[0, 0], full[1, 1], full[2, 2], full[1, 2], full[0, 2], full[0, 1]], stress)
    np.testing.assert_allclose(full, full.T)
    np.testing.assert_allclose(data[keys.CELL][0].numpy(), slab.cell.array)
    back = to_ase(data)
    assert back.get_potential_energy() == pytest.approx(energy)
    np.testing.assert_allclose(back.get_forces(), forces)
    np.testing.assert_allclose(back.get_stress(), stress, atol=1e-14)
    np.testing.assert_allclose(back.cell.array, slab.cell.array)
    assert (back.pbc == slab.pbc).all()
    again = from_ase(back, dtype=torch.float64)
    for key in data.keys():
        assert torch.equal(data[key], again[key]), key


def test_info_arrays_velocities_and_charges():
    atoms = molecule("CH3OH")
    atoms.info.update(name="methanol", weight=2.5, count=3)
    atoms.set_array("label", np.arange(len(atoms)))
    atoms.set_velocities(np.full((len(atoms), 3), 0.25))
    atoms.calc = SinglePointCalculator(atoms, energy=-1.0, charges=np.linspace(-0.5, 0.5, len(atoms)))
    data = from_ase(atoms, dtype=torch.float64)
    assert data.name == "methanol"
    assert data.weight.tolist() == [2.5] and data.count.tolist() == [3]
    assert data.label.tolist() == list(range(len(atoms)))
    np.testing.assert_allclose(data[keys.VEL].numpy(), 0.25)
    np.testing.assert_allclose(data[keys.CHARGES].numpy(), np.linspace(-0.5, 0.5, len(atoms)))
    back = to_ase(data)
    assert back.info == {"name": "methanol", "weight": 2.5, "count": 3}
    assert back.arrays["label"].tolist() == list(range(len(atoms)))
    np.testing.assert_allclose(back.get_velocities(), 0.25)
    np.testing.assert_allclose(back.get_charges(), np.linspace(-0.5, 0.5, len(atoms)))


def test_info_energy_used_without_calculator():
    atoms = molecule("H2")
    atoms.info["energy"] = -31.5
    assert from_ase(atoms)[keys.ENERGY].tolist() == [-31.5]


def test_to_ase_picks_one_graph_of_a_batch():
    slab, energy, _, _ = _cu_slab()
    water, methane = molecule("H2O"), molecule("CH4")
    for mol in (water, methane):
        mol.calc = SinglePointCalculator(mol, energy=-1.0)
    batch = Batch.from_data_list([from_ase(water), from_ase(slab), from_ase(methane)])
    back = to_ase(batch, index=1)
    assert back.get_chemical_formula() == "Cu12"
    assert back.get_potential_energy() == pytest.approx(energy, rel=1e-6)
    assert to_ase(batch, index=0).get_chemical_formula() == "H2O"
    with pytest.raises(ValueError, match="pass index="):
        to_ase(batch)
    with pytest.raises(ValueError, match="out of range"):
        to_ase(batch, index=3)
    assert to_ase(Batch.from_data_list([from_ase(water)])).get_chemical_formula() == "H2O"


def test_default_dtype_and_float64():
    assert from_ase(molecule("H2O")).pos.dtype == torch.get_default_dtype()
    assert from_ase(molecule("H2O"), dtype=torch.float64).pos.dtype == torch.float64


def test_from_ase_bad_input():
    with pytest.raises(TypeError, match="atoms"):
        from_ase("H2O")
    with pytest.raises(ValueError, match="empty"):
        from_ase(Atoms())
    bad = molecule("H2O")
    bad.positions[1, 0] = np.nan
    with pytest.raises(ValueError, match=r"atoms \[1\] are not finite"):
        from_ase(bad)
    with pytest.raises(ValueError, match="singular"):
        from_ase(Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.7]], pbc=True))


def test_to_ase_bad_input():
    data = from_ase(molecule("H2O"))
    with pytest.raises(TypeError, match="data"):
        to_ase(molecule("H2O"))
    with pytest.raises(ValueError, match="'z'"):
        to_ase(data.__class__(pos=data.pos))
    with pytest.raises(ValueError, match="index"):
        to_ase(data, index=2)
    wrong = data.clone()
    wrong.pos = wrong.pos[:2]
    with pytest.raises(ValueError, match="pos has shape"):
        to_ase(wrong)


def test_read_extxyz_with_energies_and_forces(tmp_path):
    frames = []
    for i, name in enumerate(["H2O", "NH3", "CH4"]):
        a = molecule(name)
        a.calc = SinglePointCalculator(a, energy=-float(i + 1), forces=np.full((len(a), 3), 0.1 * i))
        frames.append(a)
    path = tmp_path / "frames.extxyz"
    write(path, frames, format="extxyz")
    graphs = read(path)
    assert [g.num_nodes for g in graphs] == [3, 4, 5]
    assert [g[keys.ENERGY].item() for g in graphs] == [-1.0, -2.0, -3.0]
    np.testing.assert_allclose(graphs[2][keys.FORCES].numpy(), 0.2, rtol=1e-6)
    single = read(path, index=1)
    assert single[keys.ENERGY].item() == -2.0
    assert len(read(path, index="1:")) == 2


@pytest.mark.parametrize("fmt,suffix", [("traj", ".traj"), ("cif", ".cif"), ("vasp", "POSCAR"), ("db", ".db")])
def test_read_other_formats(tmp_path, fmt, suffix):
    slab, energy, _, _ = _cu_slab()
    path = tmp_path / (suffix if suffix == "POSCAR" else f"s{suffix}")
    write(path, slab, format=fmt)
    data = read(path, index=0, format=None if fmt != "vasp" else "vasp")
    assert data.z.tolist() == [29] * 12
    np.testing.assert_allclose(data.cell[0].numpy(), slab.cell.array, atol=1e-5)
    if fmt in ("traj", "db"):
        assert data[keys.ENERGY].item() == pytest.approx(energy, rel=1e-6)


def test_read_malformed_xyz_names_file_and_line(tmp_path):
    path = tmp_path / "bad.xyz"
    path.write_text("2\nfirst\nH 0 0 0\nH 0 0 0.74\n3\nsecond\nO 0 0 0\nH 0 0.76 oops\nH 0 -0.76 0.5\n")
    with pytest.raises(ValueError, match=r"bad.xyz: line 8: column 4 \('pos'\) is 'oops'"):
        read(path)


def test_read_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read(tmp_path / "missing.xyz")
    empty = tmp_path / "empty.xyz"
    empty.write_text("")
    with pytest.raises(ValueError, match="is empty"):
        read(empty)
    path = tmp_path / "one.xyz"
    write(path, molecule("H2O"))
    with pytest.raises(ValueError, match="no structures"):
        read(path, index="5:")


def test_read_names_file_and_frame_of_non_finite_positions(tmp_path):
    path = tmp_path / "nan.xyz"
    path.write_text("1\na\nH 0 0 0\n2\nb\nH 0 0 0\nH 0 nan 1\n")
    with pytest.raises(ValueError, match=r"nan.xyz: frame 1: .*not finite"):
        read(path)
    with pytest.raises(ValueError, match=r"nan.xyz: frame 1: .*not finite"):
        read(path, index=1)
    assert read(path, index=0).num_nodes == 1


def test_read_unknown_element_and_unknown_format(tmp_path):
    path = tmp_path / "uuo.xyz"
    path.write_text("1\na\nH 0 0 0\n2\nb\nUuo 0 0 0\nH 0 0 1\n")
    with pytest.raises(ValueError, match=r"uuo.xyz: line 6: unknown element symbol 'Uuo'"):
        read(path)
    other = tmp_path / "notes.foo"
    other.write_text("hello\n")
    with pytest.raises(ValueError, match=r"notes.foo: ASE cannot read this format"):
        read(other)
