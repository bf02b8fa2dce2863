import pytest
import torch

from equigraph.graph import knn_graph
from graph_reference import knn_pairs


def _pairs(ei):
    return set(zip(ei[1].tolist(), ei[0].tolist()))


@pytest.mark.parametrize("loop", [False, True])
def test_matches_reference_unsorted_batch(loop):
    g = torch.Generator().manual_seed(0)
    pos = torch.rand(40, 3, generator=g)
    batch = torch.tensor([2, 0, 3])[torch.randint(0, 3, (40,), generator=g)]  # unsorted, graph 1 empty
    ei = knn_graph(pos, 5, batch, loop=loop)
    assert _pairs(ei) == knn_pairs(pos, 5, batch, loop=loop)
    assert bool((torch.bincount(ei[1]) == 5).all())
    key = ei[1] * 40 + ei[0]
    assert bool((key[1:] > key[:-1]).all())


def test_ties_broken_by_index_and_small_graphs():
    pos = torch.tensor([[0.0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [5, 5, 5]])
    ei = knn_graph(pos, 2, torch.tensor([0, 0, 0, 0, 1]))
    assert ei[0, ei[1] == 0].tolist() == [1, 2]
    assert (ei[1] == 4).sum() == 0  # a graph of one node has no neighbours
    assert knn_graph(pos[:3], 10).size(1) == 6  # fewer nodes than k: everything


def test_chunked_matches_unchunked(monkeypatch):
    import equigraph.graph.brute_force as bf

    pos = torch.rand(60, 3, generator=torch.Generator().manual_seed(3))
    expect = knn_graph(pos, 4)
    monkeypatch.setattr(bf, "CHUNK", 100)
    monkeypatch.setattr(bf.block_pairs, "__defaults__", (None, 100))
    assert torch.equal(knn_graph(pos, 4), expect)


def test_empty():
    assert knn_graph(torch.zeros(0, 3), 3).shape == (2, 0)


@pytest.mark.parametrize("k", [0, -1, 1.5, None])
def test_bad_k(k):
    with pytest.raises(ValueError, match="`k`"):
        knn_graph(torch.rand(4, 3), k)


def test_bad_pos():
    with pytest.raises(ValueError, match="pos"):
        knn_graph(torch.tensor([[float("nan"), 0.0, 0.0]]), 1)
