import pytest
import torch
from torch_geometric.data import Batch, Data
from torch_geometric.nn.models import SchNet

from equigraph.graph import (
    FullInteractionGraph,
    KNNInteractionGraph,
    RadiusInteractionGraph,
    full_graph,
    knn_graph,
    periodic_radius_graph,
    radius_graph,
)


def _mols():
    g = torch.Generator().manual_seed(0)
    return [Data(z=torch.randint(1, 9, (n,), generator=g), pos=torch.randn(n, 3, generator=g) * 1.5) for n in (5, 7)]


def test_schnet_runs_with_radius_interaction_graph():
    batch = Batch.from_data_list(_mols())
    model = SchNet(hidden_channels=16, num_filters=16, num_interactions=2, num_gaussians=10,
                   interaction_graph=RadiusInteractionGraph(5.0))
    pos = batch.pos.clone().requires_grad_()
    out = model(batch.z, pos, batch.batch)
    assert out.shape == (2, 1)
    (force,) = torch.autograd.grad(out.sum(), pos)
    assert torch.isfinite(force).all()


@pytest.mark.parametrize(
    "graph, build",
    [
        (RadiusInteractionGraph(2.0), lambda p, b: radius_graph(p, 2.0, b)),
        (RadiusInteractionGraph(2.0, max_num_neighbors=2), lambda p, b: radius_graph(p, 2.0, b, max_num_neighbors=2)),
        (FullInteractionGraph(), lambda p, b: full_graph(b)),
        (KNNInteractionGraph(3), lambda p, b: knn_graph(p, 3, b)),
    ],
)
def test_call_and_from_data(graph, build):
    data = Batch.from_data_list(_mols())
    ei, w = graph(data.pos, data.batch)
    assert torch.equal(ei, build(data.pos, data.batch))
    assert torch.allclose(w, (data.pos[ei[0]] - data.pos[ei[1]]).norm(dim=1))
    ei2, shift = graph.from_data(data)
    assert torch.equal(ei2, ei) and shift is None


def test_from_data_periodic():
    cell = torch.eye(3).unsqueeze(0) * 3.0
    data = Batch.from_data_list([Data(pos=torch.rand(4, 3) * 3, cell=cell, pbc=torch.tensor([[True, True, False]]))] * 2)
    ei, shift = RadiusInteractionGraph(2.5).from_data(data)
    e2, s2 = periodic_radius_graph(data.pos, 2.5, data.cell, data.pbc, data.batch)
    assert torch.equal(ei, e2) and torch.equal(shift, s2)
    assert bool((shift != 0).any())
    with pytest.raises(ValueError, match="periodic"):
        KNNInteractionGraph(2).from_data(data)
    with pytest.raises(ValueError, match="periodic"):
        FullInteractionGraph().from_data(data)
    # pbc all False: an open graph
    data.pbc[:] = False
    assert RadiusInteractionGraph(2.5).from_data(data)[1] is None


def test_repr_and_bad_args():
    assert repr(RadiusInteractionGraph(5.0)) == "RadiusInteractionGraph(cutoff=5.0, max_num_neighbors=None, min_distance=0.0001)"
    assert repr(KNNInteractionGraph(4)) == "KNNInteractionGraph(k=4)"
    with pytest.raises(ValueError, match="cutoff"):
        RadiusInteractionGraph(0.0)
    with pytest.raises(ValueError, match="max_num_neighbors"):
        RadiusInteractionGraph(1.0, max_num_neighbors=0)
    with pytest.raises(ValueError, match="`k`"):
        KNNInteractionGraph(0)
