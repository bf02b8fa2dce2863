import pytest
import torch
from torch_geometric.data import Data

from equigraph.graph import FullGraph, KNNGraph, RadiusGraph, full_graph, knn_graph, periodic_radius_graph, radius_graph


def test_radius_graph_open():
    pos = torch.rand(10, 3, generator=torch.Generator().manual_seed(0))
    data = RadiusGraph(0.6, max_num_neighbors=3, loop=True)(Data(pos=pos))
    assert torch.equal(data.edge_index, radius_graph(pos, 0.6, max_num_neighbors=3, loop=True))
    assert "shift" not in data


def test_radius_graph_periodic_writes_shift():
    pos = torch.rand(3, 3) * 2
    cell, pbc = torch.eye(3).unsqueeze(0) * 2.0, torch.tensor([[True, True, True]])
    data = RadiusGraph(2.5)(Data(pos=pos, cell=cell, pbc=pbc))
    ei, shift = periodic_radius_graph(pos, 2.5, cell, pbc)
    assert torch.equal(data.edge_index, ei) and torch.equal(data.shift, shift)
    with pytest.raises(ValueError, match="loop"):
        RadiusGraph(2.5, loop=True)(Data(pos=pos, cell=cell, pbc=pbc))


def test_knn_and_full():
    pos = torch.rand(6, 3)
    assert torch.equal(KNNGraph(2)(Data(pos=pos)).edge_index, knn_graph(pos, 2))
    assert torch.equal(FullGraph()(Data(pos=pos)).edge_index, full_graph(num_nodes=6))
    assert FullGraph()(Data(num_nodes=3)).edge_index.size(1) == 6


def test_repr_and_bad_args():
    assert repr(RadiusGraph(5.0)) == "RadiusGraph(r=5.0, max_num_neighbors=None, loop=False, min_distance=0.0001)"
    assert repr(KNNGraph(3)) == "KNNGraph(k=3, loop=False)"
    with pytest.raises(ValueError, match="`r`"):
        RadiusGraph(-1.0)
    with pytest.raises(ValueError, match="`k`"):
        KNNGraph(0)
