"""Executable version of docs/conventions.md: if one of these fails, either the code or the
document is wrong."""
import numpy as np
import torch
from ase import Atoms
from ase.neighborlist import neighbor_list
from torch_geometric.data import Batch, Data
from torch_geometric.nn import MessagePassing

from equigraph.data import keys as K
from equigraph.nn import edge_vec

CUTOFF = 3.2


def _triclinic_atoms():
    rng = np.random.default_rng(0)
    cell = np.array([[4.0, 0.0, 0.0], [1.3, 3.6, 0.0], [0.7, -0.9, 3.9]])
    frac = rng.random((5, 3))
    # two atoms outside the cell: wrapping is the neighbour search's job, not the user's
    frac[0] += [1.0, 0.0, -1.0]
    return Atoms("CuCuOOH", scaled_positions=frac, cell=cell, pbc=True)


def _ase_edges(atoms, cutoff=CUTOFF):
    i, j, S, D = neighbor_list("ijSD", atoms, cutoff)
    # ASE's i is the centre and D = pos[j] - pos[i] + S @ cell: our edge_index is (j, i)
    edge_index = torch.from_numpy(np.stack([j, i])).long()
    return edge_index, torch.from_numpy(S).double(), torch.from_numpy(D)


class _Sum(MessagePassing):
    def __init__(self):
        super().__init__(aggr="add")

    def forward(self, x, pos, edge_index):
        return self.propagate(edge_index, x=x, pos=pos)

    def message(self, x_j, pos_i, pos_j):
        self.last_vec = pos_j - pos_i
        return x_j


def test_edge_index_row0_is_the_neighbour_and_row1_aggregates():
    x = torch.tensor([[1.0], [10.0], [100.0]])
    pos = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    edge_index = torch.tensor([[0, 2], [1, 1]])  # 0 -> 1 and 2 -> 1
    layer = _Sum()
    assert layer.flow == "source_to_target"
    out = layer(x, pos, edge_index)
    torch.testing.assert_close(out, torch.tensor([[0.0], [101.0], [0.0]]))
    # `pos_j - pos_i` in a message is exactly edge_vec: from the centre to the neighbour
    torch.testing.assert_close(layer.last_vec, edge_vec(pos, edge_index))
    torch.testing.assert_close(edge_vec(pos, edge_index), torch.tensor([[-1.0, 0.0, 0.0], [-1.0, 2.0, 0.0]]))


def test_nequip_convention_is_the_flip():
    pos = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    centre_first = torch.tensor([[0, 0, 1, 3], [1, 2, 3, 2]])  # NequIP/Allegro: row 0 = centre
    torch.testing.assert_close(
        edge_vec(pos, centre_first.flip(0)), pos[centre_first[1]] - pos[centre_first[0]]
    )


def test_edge_vec_and_shift_match_ase_on_a_triclinic_cell():
    atoms = _triclinic_atoms()
    edge_index, shift, D = _ase_edges(atoms)
    assert edge_index.size(1) > 20
    pos = torch.from_numpy(atoms.positions)
    cell = torch.from_numpy(atoms.cell.array).unsqueeze(0)
    torch.testing.assert_close(edge_vec(pos, edge_index, shift, cell), D, rtol=0, atol=1e-12)


def test_periodic_radius_graph_matches_ase():
    from equigraph.graph import periodic_radius_graph

    atoms = _triclinic_atoms()
    ase_index, ase_shift, ase_D = _ase_edges(atoms)
    pos = torch.from_numpy(atoms.positions)
    cell = torch.from_numpy(atoms.cell.array).unsqueeze(0)
    pbc = torch.ones(1, 3, dtype=torch.bool)
    edge_index, shift = periodic_radius_graph(pos, CUTOFF, cell, pbc)
    assert shift.dtype == pos.dtype and bool((shift == shift.round()).all())

    def as_set(ei, s):
        return {(int(a), int(b), *map(int, c)) for a, b, c in zip(ei[0], ei[1], s.round())}

    assert as_set(edge_index, shift) == as_set(ase_index, ase_shift)
    vec = edge_vec(pos, edge_index, shift, cell)
    assert float(vec.norm(dim=-1).max()) < CUTOFF
    torch.testing.assert_close(vec.norm(dim=-1).sort().values, ase_D.norm(dim=-1).sort().values)


def test_reversed_edges_have_opposite_shifts_and_self_images_exist():
    from equigraph.graph import periodic_radius_graph

    atoms = _triclinic_atoms()
    pos = torch.from_numpy(atoms.positions)
    cell = torch.from_numpy(atoms.cell.array).unsqueeze(0)
    edge_index, shift = periodic_radius_graph(pos, 4.5, cell, torch.ones(1, 3, dtype=torch.bool))
    edges = {(int(j), int(i), *map(int, s)) for (j, i), s in zip(edge_index.T, shift)}
    assert all((i, j, *(-c for c in s)) in edges for (j, i, *s) in edges)
    # the cutoff exceeds the shortest lattice vector: atoms see their own images
    assert any(j == i and any(s) for (j, i, *s) in edges)
    assert not any(j == i and not any(s) for (j, i, *s) in edges)


def test_cell_rows_are_lattice_vectors():
    atoms = _triclinic_atoms()
    frac = atoms.get_scaled_positions(wrap=False)
    np.testing.assert_allclose(frac @ atoms.cell.array, atoms.positions, atol=1e-12)
    # one lattice vector of shift moves a neighbour by exactly one row of the cell
    pos = torch.from_numpy(atoms.positions)
    cell = torch.from_numpy(atoms.cell.array)
    edge_index = torch.tensor([[1], [0]])
    for row in range(3):
        shift = torch.zeros(1, 3, dtype=torch.float64)
        shift[0, row] = 1.0
        moved = edge_vec(pos, edge_index, shift, cell) - edge_vec(pos, edge_index)
        torch.testing.assert_close(moved[0], cell[row])


def test_from_ase_keeps_cell_rows_and_graph_level_shapes():
    from equigraph.data.ase_io import from_ase

    atoms = _triclinic_atoms()
    data = from_ase(atoms, dtype=torch.float64)
    assert data[K.CELL].shape == (1, 3, 3) and data[K.PBC].shape == (1, 3)
    torch.testing.assert_close(data[K.CELL][0], torch.from_numpy(atoms.cell.array))


def test_keys_registry():
    expected = {
        "Z": "z", "POS": "pos", "X": "x", "VEL": "vel", "CELL": "cell", "PBC": "pbc",
        "ENERGY": "energy", "FORCES": "forces", "STRESS": "stress", "CHARGES": "charges",
        "Y": "y", "BATCH": "batch", "EDGE_INDEX": "edge_index", "SHIFT": "shift",
        "EDGE_ATTR": "edge_attr",
    }
    for name, value in expected.items():
        assert getattr(K, name) == value, name
    groups = K.GRAPH_KEYS + K.NODE_KEYS + K.EDGE_KEYS
    assert len(groups) == len(set(groups))
    # PyG attribute names that would clash with Data's own properties are not used as keys
    assert not set(groups) & {"num_nodes", "num_edges", "ptr"}


def test_graph_level_keys_batch_to_one_row_per_graph():
    def graph(n):
        return Data(
            pos=torch.zeros(n, 3), cell=torch.eye(3).unsqueeze(0), pbc=torch.ones(1, 3, dtype=torch.bool),
            energy=torch.zeros(1), stress=torch.zeros(1, 3, 3),
            edge_index=torch.tensor([[0], [1]]), shift=torch.zeros(1, 3),
        )

    batch = Batch.from_data_list([graph(2), graph(3), graph(4)])
    assert batch[K.CELL].shape == (3, 3, 3)
    assert batch[K.PBC].shape == (3, 3)
    assert batch[K.ENERGY].shape == (3,)
    assert batch[K.STRESS].shape == (3, 3, 3)
    assert batch[K.SHIFT].shape == (3, 3)
    # edge indices are offset per graph, so edges never cross graphs
    assert batch[K.BATCH][batch[K.EDGE_INDEX]].eq(batch[K.BATCH][batch[K.EDGE_INDEX][1]]).all()


def test_edge_vec_in_a_batch_uses_each_graphs_cell():
    atoms_a, atoms_b = _triclinic_atoms(), _triclinic_atoms()
    atoms_b.set_cell(atoms_b.cell.array * 1.1, scale_atoms=True)
    pieces = []
    for atoms in (atoms_a, atoms_b):
        edge_index, shift, D = _ase_edges(atoms)
        pieces.append(Data(pos=torch.from_numpy(atoms.positions), cell=torch.from_numpy(atoms.cell.array)[None],
                           edge_index=edge_index, shift=shift, D=D))
    batch = Batch.from_data_list(pieces[::-1])
    vec = edge_vec(batch.pos, batch.edge_index, batch.shift, batch.cell, batch.batch)
    torch.testing.assert_close(vec, batch.D, rtol=0, atol=1e-12)
