import pytest
import torch
from torch_geometric.data import Batch, Data

from equigraph.nn.frames import num_graphs_of, replicate


def _graph(n, e, seed):
    g = torch.Generator().manual_seed(seed)
    return Data(
        pos=torch.randn(n, 3, generator=g),
        z=torch.randint(1, 9, (n,), generator=g),
        edge_index=torch.randint(0, n, (2, e), generator=g),
        edge_attr=torch.randn(e, 2, generator=g),
        energy=torch.randn(1, generator=g),
        cell=torch.eye(3).unsqueeze(0) * n,
        name=f"graph{seed}",
    )


def _assert_same(a: Data, b: Data):
    assert sorted(a.keys()) == sorted(b.keys())
    for key in a.keys():
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


def test_single_graph():
    data = _graph(4, 5, 0)
    out = replicate(data, 3)
    assert out.num_graphs == 3 and out.num_nodes == 12
    assert out.batch.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert out.ptr.tolist() == [0, 4, 8, 12]
    assert torch.equal(out.edge_index, torch.cat([data.edge_index + 4 * f for f in range(3)], dim=1))
    assert out.cell.shape == (3, 3, 3) and out.energy.shape == (3,)
    for copy in out.to_data_list():
        assert torch.equal(copy.pos, data.pos) and torch.equal(copy.edge_index, data.edge_index)
        assert torch.equal(copy.cell, data.cell)


def test_batch_is_copy_major_and_splits_back():
    graphs = [_graph(3, 4, 1), _graph(5, 2, 2), _graph(4, 6, 3)]
    batch = Batch.from_data_list(graphs, follow_batch=["edge_attr"])
    out = replicate(batch, 2)
    assert out.num_graphs == 6 and num_graphs_of(out) == 6
    assert out.batch.tolist() == batch.batch.tolist() + (batch.batch + 3).tolist()
    assert out.ptr.tolist() == [0, 3, 8, 12, 15, 20, 24]
    assert out.name == [g.name for g in graphs] * 2
    assert out.edge_attr_batch.tolist() == batch.edge_attr_batch.tolist() + (batch.edge_attr_batch + 3).tolist()
    assert out.edge_attr_ptr.tolist() == [0, 4, 6, 12, 16, 18, 24]
    for i, copy in enumerate(out.to_data_list()):
        expected = graphs[i % 3]
        for key in ("pos", "z", "edge_index", "edge_attr", "energy", "cell"):
            assert torch.equal(copy[key], expected[key]), (i, key)
        assert copy.name == expected.name


def test_values_replace_the_repeated_tensors():
    data = _graph(4, 3, 4)
    pos = torch.randn(8, 3)
    out = replicate(data, 2, values={"pos": pos})
    assert out.pos is pos
    with pytest.raises(ValueError, match=r"`values\['pos'\]` has shape \[7, 3\], expected 2 x \[4, 3\]"):
        replicate(data, 2, values={"pos": torch.randn(7, 3)})
    with pytest.raises(ValueError, match=r"`values` names \['vel'\]"):
        replicate(data, 2, values={"vel": pos})


def test_multi_graph_data_without_ptr():
    data = Data(pos=torch.randn(5, 3), batch=torch.tensor([1, 0, 1, 0, 0]))
    out = replicate(data, 2)
    assert out.num_graphs == 4 and out.batch.tolist() == [1, 0, 1, 0, 0, 3, 2, 3, 2, 2]


@pytest.mark.filterwarnings("ignore:Unable to accurately infer 'num_nodes'")
def test_bad_arguments():
    data = _graph(3, 2, 5)
    with pytest.raises(ValueError, match="must be a torch_geometric Data or Batch"):
        replicate({"pos": torch.zeros(3, 3)}, 2)
    for copies in (0, True, 2.0):
        with pytest.raises(ValueError, match="`copies` must be a positive int"):
            replicate(data, copies)
    sparse = Data(pos=torch.zeros(3, 3), adj=torch.eye(3).to_sparse())
    with pytest.raises(ValueError, match="data.adj`: replicating non-strided"):
        replicate(sparse, 2)
    with pytest.raises(ValueError, match="has no nodes"):
        replicate(Data(), 2)
