import pytest
import torch
from torch_geometric.data import Data

from equigraph.graph import RadiusGraph, RadiusInteractionGraph, periodic_radius_graph, radius_graph

BACKENDS = ["brute", "cell_list", "vesin", "auto"]
PBC = torch.tensor([True, True, True])


def _water_with_duplicate(eps=0.0):
    pos = torch.tensor([[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0], [0.96 + eps, 0.0, 0.0]],
                       dtype=torch.float64)
    return pos


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_coincident_pair_in_molecule(backend, dtype):
    with pytest.raises(ValueError, match=r"atoms 1 and 3 coincide \(distance 0 Å < min_distance=0.0001\)"):
        radius_graph(_water_with_duplicate().to(dtype), 2.0, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_tolerance_is_strict_and_tunable(backend):
    with pytest.raises(ValueError, match=r"atoms 1 and 3 coincide \(distance 5e-05"):
        radius_graph(_water_with_duplicate(5e-5), 2.0, backend=backend)
    assert radius_graph(_water_with_duplicate(2e-4), 2.0, backend=backend).size(1) == 12
    with pytest.raises(ValueError, match="min_distance=0.001"):
        radius_graph(_water_with_duplicate(2e-4), 2.0, backend=backend, min_distance=1e-3)
    # closer than min_distance but beyond the cutoff: not an edge, nothing to refuse
    far = torch.tensor([[0.0, 0, 0], [3.0, 0, 0]])
    assert radius_graph(far, 2.0, backend=backend, min_distance=5.0).size(1) == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_second_graph_of_unsorted_batch(backend):
    g = torch.Generator().manual_seed(0)
    pos = torch.rand(12, 3, generator=g, dtype=torch.float64) * 6.0
    batch = torch.tensor([1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0])
    pos[8] = pos[2]  # both in graph 1
    pos[5] = pos[2]  # graph 0: same place, different graph, no edge
    with pytest.raises(ValueError, match=r"atoms 2 and 8 of graph 1 coincide"):
        radius_graph(pos, 3.0, batch, backend=backend)
    # reported the same way by periodic_radius_graph with open cells
    with pytest.raises(ValueError, match=r"atoms 2 and 8 of graph 1 coincide"):
        periodic_radius_graph(pos, 3.0, None, torch.tensor([False] * 3), batch, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_atom_on_periodic_image_in_cubic_cell(backend):
    cell = torch.eye(3, dtype=torch.float64) * 3.0
    pos = torch.tensor([[0.0, 1.0, 1.0], [3.0, 1.0, 1.0], [1.5, 2.0, 2.0]], dtype=torch.float64)
    # pos[1] + shift @ cell == pos[0] for shift [-1, 0, 0]
    with pytest.raises(ValueError, match=r"atom 0 and the periodic image of atom 1 at shift \[-1, 0, 0\] coincide "
                                         r"\(distance 0 Å"):
        periodic_radius_graph(pos, 2.5, cell, PBC, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_periodic_image_in_second_graph_of_unsorted_batch(backend):
    lengths = torch.tensor([3.0, 4.0], dtype=torch.float64).view(2, 1, 1)
    cell = torch.eye(3, dtype=torch.float64).expand(2, 3, 3) * lengths
    pos = torch.tensor([[0.5, 0.5, 0.5], [0.0, 2.0, 2.0], [2.0, 1.0, 1.0], [0.0, 2.0, 6.0]], dtype=torch.float64)
    batch = torch.tensor([0, 1, 0, 1])
    # atom 3 = atom 1 + [0, 0, 1] @ cell[1]
    with pytest.raises(ValueError, match=r"atom 1 and the periodic image of atom 3 at shift \[0, 0, -1\] of graph 1"):
        periodic_radius_graph(pos, 2.0, cell, PBC, batch, backend=backend)
    # the reported shift is the caller's: vec = pos[3] - pos[1] + shift @ cell is zero
    shift = torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64)
    assert torch.allclose(pos[3] - pos[1] + shift @ cell[1], torch.zeros(3, dtype=torch.float64))


@pytest.mark.parametrize("backend", BACKENDS)
def test_min_distance_zero_disables(backend):
    pos = _water_with_duplicate()
    ei = radius_graph(pos, 2.0, backend=backend, min_distance=0)
    assert ei.size(1) == 12
    assert (3, 1) in set(zip(ei[1].tolist(), ei[0].tolist()))
    cell = torch.eye(3, dtype=torch.float64) * 3.0
    pcs = torch.tensor([[0.0, 1.0, 1.0], [3.0, 1.0, 1.0]], dtype=torch.float64)
    ei, shift = periodic_radius_graph(pcs, 1.0, cell, PBC, backend=backend, min_distance=0.0)
    assert sorted(zip(ei[1].tolist(), ei[0].tolist(), shift.tolist())) == [(0, 1, [-1.0, 0.0, 0.0]),
                                                                         (1, 0, [1.0, 0.0, 0.0])]


@pytest.mark.parametrize("backend", BACKENDS)
def test_requested_self_loops_are_exempt(backend):
    pos = _water_with_duplicate(0.5)
    ei = radius_graph(pos, 2.0, backend=backend, loop=True)
    assert ei.size(1) == 16
    with pytest.raises(ValueError, match="atoms 1 and 3 coincide"):
        radius_graph(_water_with_duplicate(), 2.0, backend=backend, loop=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_raises_with_neighbour_cap(backend):
    with pytest.raises(ValueError, match="atoms 1 and 3 coincide"):
        radius_graph(_water_with_duplicate(), 2.0, max_num_neighbors=1, backend=backend)


@pytest.mark.parametrize("bad", [-1e-4, float("nan"), float("inf"), "0.1", torch.ones(2)])
def test_bad_min_distance(bad):
    pos = _water_with_duplicate(0.5)
    with pytest.raises(ValueError, match="`min_distance`"):
        radius_graph(pos, 2.0, min_distance=bad)
    with pytest.raises(ValueError, match="`min_distance`"):
        periodic_radius_graph(pos, 2.0, torch.eye(3) * 5, PBC, min_distance=bad)
    with pytest.raises(ValueError, match="`min_distance`"):
        RadiusInteractionGraph(2.0, min_distance=bad)
    with pytest.raises(ValueError, match="`min_distance`"):
        RadiusGraph(2.0, min_distance=bad)


def test_interaction_graph_and_transform_pass_it_through():
    pos = _water_with_duplicate()
    with pytest.raises(ValueError, match="atoms 1 and 3 coincide"):
        RadiusInteractionGraph(2.0)(pos)
    with pytest.raises(ValueError, match="atoms 1 and 3 coincide"):
        RadiusInteractionGraph(2.0).from_data(Data(pos=pos))
    with pytest.raises(ValueError, match="atoms 1 and 3 coincide"):
        RadiusGraph(2.0)(Data(pos=pos))
    assert RadiusInteractionGraph(2.0, min_distance=0)(pos)[0].size(1) == 12
    assert RadiusGraph(2.0, min_distance=0)(Data(pos=pos)).edge_index.size(1) == 12
    cell = torch.eye(3, dtype=torch.float64) * 3.0
    crystal = Data(pos=torch.tensor([[0.0, 1.0, 1.0], [3.0, 1.0, 1.0]], dtype=torch.float64), cell=cell.unsqueeze(0),
                   pbc=PBC.unsqueeze(0))
    with pytest.raises(ValueError, match="periodic image of atom 1"):
        RadiusInteractionGraph(1.0).from_data(crystal)
    with pytest.raises(ValueError, match="periodic image of atom 1"):
        RadiusGraph(1.0)(crystal)
    assert RadiusGraph(1.0, min_distance=0)(crystal).shift.size(0) == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("backend", ["brute", "cell_list", "auto"])
def test_gpu(backend):
    with pytest.raises(ValueError, match="atoms 1 and 3 coincide"):
        radius_graph(_water_with_duplicate().cuda(), 2.0, backend=backend)
    cell = torch.eye(3, dtype=torch.float64, device="cuda") * 3.0
    pos = torch.tensor([[0.0, 1.0, 1.0], [3.0, 1.0, 1.0]], dtype=torch.float64, device="cuda")
    with pytest.raises(ValueError, match=r"shift \[-1, 0, 0\]"):
        periodic_radius_graph(pos, 2.5, cell, PBC.cuda(), backend=backend)
