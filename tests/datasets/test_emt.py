import math
import os

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT as EMTCalculator
from ase.calculators.emt import parameters as emt_parameters
from ase.calculators.fd import calculate_numerical_forces, calculate_numerical_stress
from ase.io import read, write
from torch_geometric.loader import DataLoader

from equigraph.data import keys
from equigraph.data.ase_io import to_ase
from equigraph.datasets import AseDataset
from equigraph.datasets.emt import (
    EMT,
    KIND,
    KINDS,
    SLAB_VACUUM,
    SUPPORTED_ELEMENTS,
    UNITS,
    generate_emt_structures,
    lattice_constant,
    random_split,
)

NUM = 20
LABELS = (keys.Z, keys.POS, keys.CELL, keys.PBC, keys.ENERGY, keys.FORCES, keys.STRESS, KIND)


@pytest.fixture(scope="module")
def ds64(tmp_path_factory):
    return EMT(str(tmp_path_factory.mktemp("emt64")), NUM, dtype=torch.float64, log=False)


def _emt_atoms(data):
    atoms = to_ase(data)
    atoms.calc = EMTCalculator()
    return atoms


def _smallest(ds, kind):
    graphs = [d for d in ds if KINDS[d[KIND].item()] == kind]
    return min(graphs, key=lambda d: d.num_nodes)


def test_supported_elements_are_emts():
    assert set(SUPPORTED_ELEMENTS) == set(emt_parameters)
    assert UNITS == {"energy": "eV", "forces": "eV/Å", "stress": "eV/Å^3"}


def test_lattice_constant_is_near_the_emt_energy_minimum():
    a0 = lattice_constant("Cu")
    energies = []
    for scale in np.linspace(0.97, 1.03, 13):
        atoms = bulk("Cu", "fcc", a=a0 * scale)
        atoms.calc = EMTCalculator()
        energies.append(atoms.get_potential_energy())
    assert abs(np.linspace(0.97, 1.03, 13)[int(np.argmin(energies))] - 1.0) <= 0.01
    with pytest.raises(ValueError, match="'Fe'"):
        lattice_constant("Fe")


def test_keys_shapes_and_batching(ds64):
    assert len(ds64) == NUM
    for d in ds64:
        n = d.num_nodes
        assert 4 <= n <= 40
        assert d[keys.Z].dtype == torch.long and d[keys.Z].shape == (n,)
        assert set(d[keys.Z].tolist()) <= {29, 78}
        assert d[keys.POS].shape == (n, 3) and d[keys.POS].dtype == torch.float64
        assert d[keys.CELL].shape == (1, 3, 3) and d[keys.PBC].shape == (1, 3)
        assert d[keys.PBC].dtype == torch.bool
        assert d[keys.ENERGY].shape == (1,) and d[keys.FORCES].shape == (n, 3)
        assert d[keys.STRESS].shape == (1, 3, 3) and d[KIND].shape == (1,)
        assert torch.isfinite(d[keys.FORCES]).all() and torch.isfinite(d[keys.STRESS]).all()
    batch = next(iter(DataLoader(ds64, batch_size=5)))
    assert batch[keys.ENERGY].shape == (5,) and batch[keys.CELL].shape == (5, 3, 3)
    assert batch[keys.STRESS].shape == (5, 3, 3) and batch[keys.PBC].shape == (5, 3)
    assert batch[KIND].shape == (5,)


def test_default_dtype_is_float32(tmp_path):
    d = EMT(str(tmp_path), 3, log=False)[0]
    assert d[keys.POS].dtype == d[keys.FORCES].dtype == d[keys.ENERGY].dtype == torch.float32


def test_mixes_kinds_pure_metals_and_alloys(ds64):
    kinds = {KINDS[d[KIND].item()] for d in ds64}
    species = [len(set(d[keys.Z].tolist())) for d in ds64]
    assert kinds == {"bulk", "slab"}
    assert 1 in species and 2 in species


def test_same_seed_identical_other_seed_differs_and_prefix(tmp_path, ds64):
    again = EMT(str(tmp_path / "a"), NUM, dtype=torch.float64, log=False)
    for d1, d2 in zip(ds64, again):
        for key in LABELS:
            assert torch.equal(d1[key], d2[key]), key
    other = EMT(str(tmp_path / "b"), NUM, seed=1, dtype=torch.float64, log=False)
    assert not torch.equal(ds64._data[keys.ENERGY], other._data[keys.ENERGY])
    # Structure i depends on (seed, i) only: fewer structures are a prefix.
    for atoms, d in zip(generate_emt_structures(4), ds64):
        np.testing.assert_array_equal(atoms.positions, d[keys.POS].numpy())
        assert atoms.get_potential_energy() == d[keys.ENERGY].item()


@pytest.mark.parametrize("kind", KINDS)
def test_forces_are_minus_the_finite_difference_gradient(ds64, kind):
    d = _smallest(ds64, kind)
    atoms = _emt_atoms(d)
    assert atoms.get_potential_energy() == pytest.approx(d[keys.ENERGY].item(), abs=1e-10)
    numeric = calculate_numerical_forces(atoms, eps=1e-5)
    np.testing.assert_allclose(d[keys.FORCES].numpy(), numeric, atol=1e-6)
    # Translation invariance: no net force on the structure.
    np.testing.assert_allclose(d[keys.FORCES].sum(0).numpy(), 0.0, atol=1e-9)


@pytest.mark.parametrize("kind", KINDS)
def test_stress_matches_ase_and_its_strain_derivative(ds64, kind):
    d = _smallest(ds64, kind)
    atoms = _emt_atoms(d)
    stress = d[keys.STRESS][0].numpy()
    np.testing.assert_allclose(stress, atoms.get_stress(voigt=False), atol=1e-12)
    np.testing.assert_allclose(stress, stress.T, atol=1e-12)
    if kind == "bulk":
        numeric = calculate_numerical_stress(atoms, eps=1e-6, voigt=False)
        np.testing.assert_allclose(stress, numeric, atol=1e-7)


def test_slabs_have_vacuum_and_open_surface_normal(ds64):
    seen = set()
    for d in ds64:
        kind = KINDS[d[KIND].item()]
        seen.add(kind)
        pbc = d[keys.PBC][0].tolist()
        if kind == "bulk":
            assert pbc == [True, True, True]
            continue
        assert pbc == [True, True, False]
        cell = d[keys.CELL][0]
        assert torch.allclose(cell[2, :2], torch.zeros(2, dtype=cell.dtype)) and cell[:2, 2].abs().max() < 1e-12
        z = d[keys.POS][:, 2]
        assert cell[2, 2] - (z.max() - z.min()) > 2 * SLAB_VACUUM - 0.5
    assert seen == set(KINDS)


def test_every_structure_has_nonzero_forces(ds64):
    for d in ds64:
        assert d[keys.FORCES].abs().max() > 1e-3


def test_cache_reload_is_identical_and_keyed_by_options(tmp_path):
    root = str(tmp_path)
    first = EMT(root, 6, log=False)
    path = first.processed_paths[0]
    assert os.path.dirname(path) == os.path.join(root, first.digest)
    mtime = os.path.getmtime(path)
    second = EMT(root, 6, log=False)
    assert os.path.getmtime(path) == mtime
    for d1, d2 in zip(first, second):
        for key in LABELS:
            assert torch.equal(d1[key], d2[key]), key
    assert EMT(root, 6, rattle=0.02, log=False).digest != first.digest


def test_default_root_follows_equigraph_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EQUIGRAPH_CACHE", str(tmp_path))
    ds = EMT(num_structures=3, log=False)
    assert ds.processed_dir == os.path.join(str(tmp_path), "emt", ds.digest)
    assert os.path.isfile(ds.processed_paths[0])


def test_splits_are_disjoint_and_cover_everything(ds64, tmp_path):
    split = ds64.get_split()
    parts = [split[k].tolist() for k in ("train", "val", "test")]
    assert [len(p) for p in parts] == [16, 2, 2]
    assert sorted(sum(parts, [])) == list(range(NUM))
    root = str(tmp_path)
    energies = []
    for subset, idx in zip(("train", "val", "test"), parts):
        sub = EMT(root, NUM, dtype=torch.float64, subset=subset, log=False)
        assert len(sub) == len(idx)
        got = torch.cat([d[keys.ENERGY] for d in sub])
        assert torch.equal(got, ds64._data[keys.ENERGY][idx])
        energies.append(got)
    assert torch.cat(energies).sort().values.equal(ds64._data[keys.ENERGY].sort().values)
    assert torch.equal(random_split(NUM, 0)["train"], split["train"])
    assert not torch.equal(random_split(NUM, 1)["train"], split["train"])


def test_split_needs_three_structures(tmp_path):
    with pytest.raises(ValueError, match="at least 3"):
        random_split(2)
    with pytest.raises(ValueError, match="subset"):
        EMT(str(tmp_path), 2, subset="train", log=False)


def test_options_single_element_and_kind(tmp_path):
    atoms = generate_emt_structures(4, elements="Au", kinds="bulk", alloy_fraction=1.0, rattle=0.0, strain=0.0)
    for a in atoms:
        assert set(a.get_chemical_symbols()) == {"Au"} and a.info["kind"] == "bulk"
        assert np.abs(a.get_forces()).max() < 1e-8  # ideal crystal: forces vanish by symmetry
    ds = EMT(str(tmp_path), 4, kinds=("slab",), pre_transform=lambda d: d, transform=lambda d: d, log=False)
    assert all(d[KIND].item() == KINDS.index("slab") for d in ds)


def test_labelled_atoms_round_trip_through_extxyz(tmp_path):
    atoms = generate_emt_structures(4, seed=3)
    path = tmp_path / "emt.extxyz"
    write(path, atoms, format="extxyz")
    back = read(path, index=":")
    for a, b in zip(atoms, back):
        assert b.get_potential_energy() == pytest.approx(a.get_potential_energy(), abs=1e-8)
        np.testing.assert_allclose(b.get_forces(), a.get_forces(), atol=1e-8)
        np.testing.assert_allclose(b.get_stress(), a.get_stress(), atol=1e-10)
    assert len(AseDataset(path, root=str(tmp_path / "cache"), log=False)) == 4


BAD_OPTIONS = [
    (dict(elements=("Cu", "Fe")), "elements: .*'Fe'"),
    (dict(elements=()), "elements: empty"),
    (dict(elements=(29,)), "elements: expected strings"),
    (dict(num=0), "num_structures"),
    (dict(num=-3), "num_structures"),
    (dict(num=2.5), "num_structures"),
    (dict(num=True), "num_structures"),
    (dict(rattle=-0.1), "rattle"),
    (dict(rattle=0.6), "rattle"),
    (dict(rattle=math.nan), "rattle"),
    (dict(rattle="0.1"), "rattle"),
    (dict(strain=-0.01), "strain"),
    (dict(strain=0.2), "strain"),
    (dict(alloy_fraction=1.5), "alloy_fraction"),
    (dict(kinds=("bulk", "wire")), "kinds: .*'wire'"),
    (dict(kinds=()), "kinds: empty"),
    (dict(seed=-1), "seed"),
    (dict(seed=1.5), "seed"),
]


@pytest.mark.parametrize("options, match", BAD_OPTIONS)
def test_generate_rejects_bad_options(options, match):
    options = dict(options)
    num = options.pop("num", 2)
    with pytest.raises(ValueError, match=match):
        generate_emt_structures(num, **options)


@pytest.mark.parametrize("options, match", BAD_OPTIONS + [
    (dict(subset="training"), "subset"),
    (dict(dtype=torch.long), "dtype"),
])
def test_dataset_rejects_bad_options_before_generating(tmp_path, options, match):
    options = dict(options)
    num = options.pop("num", 2)
    with pytest.raises(ValueError, match=match):
        EMT(str(tmp_path), num, log=False, **options)
    assert not os.listdir(tmp_path)


def test_pre_filter_removing_everything_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="pre_filter"):
        EMT(str(tmp_path), 2, pre_filter=lambda d: False, log=False)
