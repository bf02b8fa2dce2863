"""periodic_radius_graph (equigraph/graph/radius.py) against ASE and a brute-force
enumeration of images."""
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, fcc111, molecule
from ase.neighborlist import neighbor_list

from equigraph.graph import periodic_radius_graph, radius_graph
from graph_reference import periodic_triples

BACKENDS = ["brute", "cell_list", "vesin", "auto"]


def _systems():
    cu = bulk("Cu", "fcc", a=3.6)  # primitive cell, 1 atom: cutoff 5 Å spans many images
    cu_sc = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    cu_sc.rattle(0.05, seed=0)
    cu_sc.positions += [7.3, -12.1, 3.3]  # positions outside the cell
    tri = Atoms("H2O", positions=[[0, 0, 0], [0.5, 0.3, 0.2], [1.1, 0.2, 0.9]],
                cell=[[2.2, 0, 0], [1.9, 0.7, 0], [0.3, 0.2, 1.6]], pbc=True)  # strongly sheared
    slab = fcc111("Cu", (2, 2, 3), vacuum=5.0)
    slab.pbc = [True, True, False]
    wire = Atoms("C2", positions=[[0, 0, 0], [0.7, 0.3, 0.1]], cell=[1.3, 0, 0], pbc=[True, False, False])
    tiny = Atoms("Ar", positions=[[0.2, 0.1, 0.3]], cell=[1.1, 1.3, 0.9], pbc=True)  # cell << cutoff
    return {"cu_primitive": cu, "cu_supercell": cu_sc, "triclinic": tri, "slab": slab, "wire": wire, "tiny": tiny}


SYSTEMS = _systems()


def _ase_triples(atoms, r):
    i, j, s = neighbor_list("ijS", atoms, r)
    return set(zip(i.tolist(), j.tolist(), map(tuple, s.tolist())))


def _triples(edge_index, shift):
    return set(zip(edge_index[1].tolist(), edge_index[0].tolist(), map(tuple, shift.long().tolist())))


def _tensors(atoms, dtype=torch.float64):
    return (torch.tensor(atoms.positions, dtype=dtype), torch.tensor(atoms.cell.array, dtype=dtype),
            torch.tensor(atoms.pbc))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", list(SYSTEMS))
@pytest.mark.parametrize("r", [1.9, 4.0])
def test_matches_ase(name, backend, r):
    atoms = SYSTEMS[name]
    pos, cell, pbc = _tensors(atoms)
    ei, shift = periodic_radius_graph(pos, r, cell, pbc, backend=backend)
    assert shift.dtype == pos.dtype and shift.shape == (ei.size(1), 3)
    assert torch.equal(shift, shift.round())
    assert _triples(ei, shift) == _ase_triples(atoms, r)


def test_matches_image_enumeration_and_self_images():
    atoms = SYSTEMS["tiny"]
    pos, cell, pbc = _tensors(atoms)
    ei, shift = periodic_radius_graph(pos, 3.0, cell, pbc)
    assert _triples(ei, shift) == periodic_triples(atoms.positions, 3.0, atoms.cell.array, atoms.pbc)
    assert bool((ei[0] == ei[1]).all()) and bool((shift != 0).any(dim=1).all())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_edge_vectors_equal_ase_D(dtype):
    atoms = SYSTEMS["triclinic"]
    pos, cell, pbc = _tensors(atoms, dtype)
    ei, shift = periodic_radius_graph(pos, 4.0, cell, pbc)
    vec = pos[ei[0]] - pos[ei[1]] + shift @ cell
    i, j, s, d = neighbor_list("ijSD", atoms, 4.0)
    ref = {(a, b, tuple(c)): v for a, b, c, v in zip(i.tolist(), j.tolist(), s.tolist(), d)}
    got = {(a, b, tuple(c)): v.double().numpy()
           for a, b, c, v in zip(ei[1].tolist(), ei[0].tolist(), shift.long().tolist(), vec)}
    assert got.keys() == ref.keys()
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    assert max(np.abs(got[k] - ref[k]).max() for k in ref) < tol


def test_slab_zero_row_along_non_periodic_axis():
    atoms = SYSTEMS["slab"]
    pos, cell, pbc = _tensors(atoms)
    cell[2] = 0.0
    for backend in ["brute", "cell_list", "vesin"]:
        ei, shift = periodic_radius_graph(pos, 4.0, cell, pbc, backend=backend)
        assert _triples(ei, shift) == _ase_triples(atoms, 4.0)
        assert bool((shift[:, 2] == 0).all())


@pytest.mark.parametrize("backend", BACKENDS)
def test_unsorted_batch_of_crystals(backend):
    names = ["cu_primitive", "slab", "triclinic"]
    parts = [_tensors(SYSTEMS[n]) for n in names]
    sizes = [p[0].size(0) for p in parts]
    pos = torch.cat([p[0] for p in parts])
    cell = torch.stack([p[1] for p in parts])
    pbc = torch.stack([p[2] for p in parts])
    batch = torch.repeat_interleave(torch.arange(3), torch.tensor(sizes))
    perm = torch.randperm(pos.size(0), generator=torch.Generator().manual_seed(0))
    ei, shift = periodic_radius_graph(pos[perm], 4.0, cell, pbc, batch[perm], backend=backend)
    got = _triples(perm[ei], shift)  # back to the original node numbering
    offsets = np.cumsum([0] + sizes)
    expect = set()
    for g, n in enumerate(names):
        o = int(offsets[g])
        expect |= {(a + o, b + o, s) for a, b, s in _ase_triples(SYSTEMS[n], 4.0)}
    assert got == expect
    assert bool((batch[perm][ei[0]] == batch[perm][ei[1]]).all())
    key = ei[1] * pos.size(0) + ei[0]
    assert bool((key[1:] >= key[:-1]).all())


def test_pairs_come_in_both_directions_with_opposite_shifts():
    pos, cell, pbc = _tensors(SYSTEMS["cu_supercell"])
    ei, shift = periodic_radius_graph(pos, 4.0, cell, pbc)
    t = _triples(ei, shift)
    assert t == {(j, i, tuple(-x for x in s)) for i, j, s in t}


@pytest.mark.parametrize("backend", ["brute", "cell_list", "vesin"])
def test_cap_keeps_nearest_images(backend):
    pos, cell, pbc = _tensors(SYSTEMS["cu_primitive"])
    ei, shift = periodic_radius_graph(pos, 5.0, cell, pbc, max_num_neighbors=12, backend=backend)
    dist = (pos[ei[0]] - pos[ei[1]] + shift @ cell).norm(dim=1)
    assert ei.size(1) == 12
    assert torch.allclose(dist, torch.full_like(dist, 3.6 / 2**0.5))  # the 12 nearest of fcc


def test_open_cell_equals_radius_graph():
    pos, _, _ = _tensors(SYSTEMS["cu_supercell"])
    ei, shift = periodic_radius_graph(pos, 3.0, torch.zeros(3, 3), torch.zeros(3, dtype=torch.bool))
    assert torch.equal(ei, radius_graph(pos, 3.0)) and not bool(shift.any())


@pytest.mark.parametrize("name", ["CH4", "C6H6", "CH3CH2OH", "H2O"])
def test_g2_molecules_match_ase(name):
    atoms = molecule(name)
    ei = radius_graph(torch.tensor(atoms.positions), 2.5)
    i, j = neighbor_list("ij", atoms, 2.5)
    assert set(zip(ei[1].tolist(), ei[0].tolist())) == set(zip(i.tolist(), j.tolist()))


def test_empty():
    ei, shift = periodic_radius_graph(torch.zeros(0, 3), 2.0, torch.eye(3), torch.ones(3, dtype=torch.bool))
    assert ei.shape == (2, 0) and shift.shape == (0, 3)


@pytest.mark.parametrize(
    "cell, pbc, match",
    [
        (torch.diag(torch.tensor([2.0, 2.0, 0.0])), [True, True, True], "singular"),
        (torch.tensor([[1.0, 0, 0], [2.0, 0, 0], [0, 0, 1]]), [True, True, False], "singular"),
        (None, [True, False, False], "cell"),
        (torch.eye(2), [True, True, True], "cell"),
        (torch.eye(3), [True, True], "pbc"),
        (torch.eye(3) * float("nan"), [True, True, True], "cell"),
        (torch.eye(3).expand(2, 3, 3), [True, True, True], "batch"),
    ],
)
def test_bad_cell(cell, pbc, match):
    batch = torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match=match):
        periodic_radius_graph(torch.rand(3, 3), 1.0, cell, torch.tensor(pbc), batch)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", list(SYSTEMS))
def test_gpu_cell_list(name):
    pos, cell, pbc = _tensors(SYSTEMS[name])
    ei, shift = periodic_radius_graph(pos.cuda(), 4.0, cell.cuda(), pbc.cuda(), backend="cell_list")
    assert ei.is_cuda and shift.is_cuda
    assert _triples(ei.cpu(), shift.cpu()) == _ase_triples(SYSTEMS[name], 4.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_unpackable_indices_fall_back_to_lexicographic_sort(backend, monkeypatch):
    import equigraph.graph.radius as radius

    pos, cell, pbc = _tensors(SYSTEMS["cu_supercell"])  # positions outside the cell: offsets
    expect = periodic_radius_graph(pos, 4.0, cell, pbc, max_num_neighbors=10, backend=backend)
    monkeypatch.setattr(radius, "key_layout", lambda *args: None)
    got = periodic_radius_graph(pos, 4.0, cell, pbc, max_num_neighbors=10, backend=backend)
    assert torch.equal(got[0], expect[0]) and torch.equal(got[1], expect[1])
