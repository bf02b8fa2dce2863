import pytest
import torch
from torch_geometric.data import Batch, Data

from equigraph.graph import full_graph
from equigraph.models.contract import Output
from equigraph.nn.backbones import GCL, GNN
from equigraph.testing import assert_batch_consistent


def _graphs(edge_dim=1):
    gen = torch.Generator().manual_seed(0)
    out = []
    for n in (5, 4):
        ei = full_graph(None, num_nodes=n)
        out.append(Data(pos=torch.randn(n, 3, generator=gen), vel=torch.randn(n, 3, generator=gen),
                        x=torch.randn(n, 1, generator=gen), edge_index=ei,
                        edge_attr=torch.randn(ei.size(1), edge_dim, generator=gen)))
    return out


def test_shapes_and_declaration(dtype):
    model = GNN(hidden_channels=8, num_layers=2, edge_dim=1, in_channels=1)
    out = model(Batch.from_data_list(_graphs()))
    assert out["pos"].shape == (9, 3) and out["pos"].dtype == dtype
    assert model.outputs == {"pos": Output("point", "node")}
    assert repr(model).startswith("GNN(hidden_channels=8")
    assert repr(GCL(4)) == "GCL(4, edge_dim=0)"


def test_builds_its_graph_when_the_data_has_none():
    torch.manual_seed(0)
    model = GNN(hidden_channels=8, num_layers=2, edge_dim=0)
    graphs = _graphs()
    with_edges = model(graphs[0])["pos"]
    del graphs[0].edge_index
    assert torch.allclose(model(graphs[0])["pos"], with_edges)
    radius = GNN(hidden_channels=8, num_layers=1, edge_dim=0, use_velocity=False, interaction_graph=10.0)
    assert radius(graphs[0])["pos"].shape == (5, 3)


def test_batch_consistent():
    assert_batch_consistent(GNN(hidden_channels=8, num_layers=2, edge_dim=2), _graphs(edge_dim=2))


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="GNN: edge_dim must be an int >= 0"):
        GNN(edge_dim=-1)
    with pytest.raises(ValueError, match="GNN: in_channels must be an int >= 0, got -1"):
        GNN(in_channels=-1)
    with pytest.raises(ValueError, match="GNN: num_layers must be a positive int, got 0"):
        GNN(num_layers=0)
    with pytest.raises(ValueError, match="interaction_graph must be None or 'full'"):
        GNN(interaction_graph="radius")
    model = GNN(hidden_channels=8, num_layers=1, edge_dim=1)
    data = _graphs()[0]
    with pytest.raises(ValueError, match=r"data.vel must have the shape of data.pos \[5, 3\], got missing"):
        model(Data(pos=data.pos, edge_index=data.edge_index, edge_attr=data.edge_attr))
    with pytest.raises(ValueError, match=r"data.edge_attr is missing \(built with edge_dim=1\)"):
        model(Data(pos=data.pos, vel=data.vel, edge_index=data.edge_index))
    with pytest.raises(ValueError, match=r"data.edge_attr must have shape \[E=20, edge_dim=1\], got \[20, 2\]"):
        model(Data(pos=data.pos, vel=data.vel, edge_index=data.edge_index, edge_attr=torch.zeros(20, 2)))
    assert model(Data(pos=data.pos, vel=data.vel, edge_index=data.edge_index, edge_attr=torch.zeros(20)))[
        "pos"].shape == (5, 3)
