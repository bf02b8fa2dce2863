import pytest
import torch

import equigraph.graph.knn as knn_module
from equigraph.graph import knn_graph
from equigraph.graph.knn import KNN_BACKENDS, knn_neighbours, pair_sq_dist
from graph_reference import knn_pairs

BACKENDS = ("auto", "dense", "kdtree", "brute")


def _pairs(ei):
    return set(zip(ei[1].tolist(), ei[0].tolist()))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("loop", [False, True])
def test_matches_reference_unsorted_batch(loop, backend):
    g = torch.Generator().manual_seed(0)
    pos = torch.rand(40, 3, generator=g)
    batch = torch.tensor([2, 0, 3])[torch.randint(0, 3, (40,), generator=g)]  # unsorted, graph 1 empty
    ei = knn_graph(pos, 5, batch, loop=loop, backend=backend)
    assert _pairs(ei) == knn_pairs(pos, 5, batch, loop=loop)
    assert bool((torch.bincount(ei[1]) == 5).all())
    key = ei[1] * 40 + ei[0]
    assert bool((key[1:] > key[:-1]).all())


@pytest.mark.parametrize("loop", [False, True])
def test_backends_identical_on_random_batches(loop):
    g = torch.Generator().manual_seed(1)
    for trial in range(6):
        n, graphs, k = (int(torch.randint(lo, hi, (1,), generator=g)) for lo, hi in ((1, 90), (1, 5), (1, 12)))
        pos = torch.rand(n, 3, generator=g, dtype=torch.float64 if trial % 2 else torch.float32)
        batch = torch.randint(0, graphs, (n,), generator=g)
        ref = knn_graph(pos, k, batch, loop=loop, backend="brute")
        assert _pairs(ref) == knn_pairs(pos, k, batch, loop=loop)
        for backend in ("dense", "kdtree", "auto"):
            assert torch.equal(knn_graph(pos, k, batch, loop=loop, backend=backend), ref), (trial, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ties_broken_by_index_and_small_graphs(backend):
    pos = torch.tensor([[0.0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [5, 5, 5]])
    ei = knn_graph(pos, 2, torch.tensor([0, 0, 0, 0, 1]), backend=backend)
    assert ei[0, ei[1] == 0].tolist() == [1, 2]
    assert (ei[1] == 4).sum() == 0  # a graph of one node has no neighbours
    assert knn_graph(pos[:3], 10, backend=backend).size(1) == 6  # fewer nodes than k: everything
    assert knn_graph(pos[:3], 10, loop=True, backend=backend).size(1) == 9


@pytest.mark.parametrize("loop", [False, True])
def test_lattice_ties_every_backend(loop):
    # Integer coordinates: exact distances, many ties at the k-th neighbour; the k-d tree
    # candidates cannot decide them and its centres fall back to the dense scan.
    pos = torch.stack(torch.meshgrid(*[torch.arange(6.0)] * 3, indexing="ij"), dim=-1).reshape(-1, 3)
    batch = torch.arange(pos.size(0)) % 2
    ref = knn_pairs(pos, 7, batch, loop=loop)
    for backend in BACKENDS:
        assert _pairs(knn_graph(pos, 7, batch, loop=loop, backend=backend)) == ref, backend


def test_coincident_points():
    pos = torch.zeros(12, 3)
    pos[6:] = 1.0
    for backend in BACKENDS:
        ei = knn_graph(pos, 3, backend=backend)
        assert ei[0, ei[1] == 0].tolist() == [1, 2, 3]
        assert ei[0, ei[1] == 7].tolist() == [6, 8, 9]


def test_dense_blocks_and_row_ranges(monkeypatch):
    g = torch.Generator().manual_seed(3)
    pos = torch.rand(90, 3, generator=g)
    batch = torch.tensor([0] * 50 + [1] * 7 + [2] * 9 + [3] * 24)
    expect = knn_graph(pos, 6, batch, backend="brute")
    # 50^2 > budget: that graph in row ranges; the small ones padded together
    monkeypatch.setattr(knn_module, "DENSE_BUDGET", 600)
    assert torch.equal(knn_graph(pos, 6, batch, backend="dense"), expect)
    monkeypatch.setattr(knn_module, "DENSE_BUDGET", 1)
    assert torch.equal(knn_graph(pos, 6, batch, backend="dense"), expect)


def test_kdtree_fallback_in_row_ranges(monkeypatch):
    pos = torch.stack(torch.meshgrid(*[torch.arange(4.0)] * 3, indexing="ij"), dim=-1).reshape(-1, 3)
    expect = knn_graph(pos, 5, backend="brute")
    monkeypatch.setattr(knn_module, "DENSE_BUDGET", 100)
    assert torch.equal(knn_graph(pos, 5, backend="kdtree"), expect)


def test_auto_switches_to_the_tree(monkeypatch):
    pos = torch.rand(60, 3, generator=torch.Generator().manual_seed(4))
    batch = torch.tensor([0] * 10 + [1] * 50)
    expect = knn_graph(pos, 4, batch, backend="brute")
    calls = []
    tree = knn_module._kdtree_rows
    monkeypatch.setattr(knn_module, "_kdtree_rows", lambda *a: calls.append(a[2]) or tree(*a))
    monkeypatch.setattr(knn_module, "KDTREE_MIN_NODES", 20)
    assert torch.equal(knn_graph(pos, 4, batch), expect)
    assert calls == [[50]]  # only the large graph went to the tree


def test_chunked_brute_matches_unchunked(monkeypatch):
    import equigraph.graph.brute_force as bf

    pos = torch.rand(60, 3, generator=torch.Generator().manual_seed(3))
    expect = knn_graph(pos, 4, backend="brute")
    monkeypatch.setattr(bf, "CHUNK", 100)
    monkeypatch.setattr(bf.block_pairs, "__defaults__", (None, 100))
    assert torch.equal(knn_graph(pos, 4, backend="brute"), expect)
    assert torch.equal(knn_graph(pos, 4), expect)


def test_neighbour_matrix():
    pos = torch.tensor([[0.0, 0, 0], [1, 0, 0], [3, 0, 0], [9, 9, 9], [9, 9, 8]])
    batch = torch.tensor([0, 0, 0, 1, 1])
    for backend in BACKENDS:
        nb = knn_neighbours(pos, 3, batch, backend=backend)
        assert nb.tolist() == [[1, 2], [0, 2], [0, 1], [4, -1], [3, -1]], backend
    assert knn_neighbours(pos, 1, batch, loop=True).tolist() == [[0], [1], [2], [3], [4]]
    assert knn_neighbours(torch.zeros(0, 3), 2).shape == (0, 0)


def test_pair_sq_dist_broadcasts_value_for_value():
    g = torch.Generator().manual_seed(5)
    a, b = torch.rand(7, 3, generator=g), torch.rand(9, 3, generator=g)
    full = pair_sq_dist(a.unsqueeze(1), b.unsqueeze(0))
    assert full.shape == (7, 9)
    assert torch.equal(full[2, 4], pair_sq_dist(a[2], b[4]))
    assert torch.allclose(full, torch.cdist(a, b).square(), atol=1e-6)


def test_input_not_differentiated():
    pos = torch.rand(10, 3, requires_grad=True)
    assert not knn_graph(pos, 3).requires_grad


@pytest.mark.parametrize("backend", BACKENDS)
def test_empty(backend):
    assert knn_graph(torch.zeros(0, 3), 3, backend=backend).shape == (2, 0)


@pytest.mark.parametrize("k", [0, -1, 1.5, None])
def test_bad_k(k):
    with pytest.raises(ValueError, match="`k`"):
        knn_graph(torch.rand(4, 3), k)


def test_bad_pos():
    with pytest.raises(ValueError, match="pos"):
        knn_graph(torch.tensor([[float("nan"), 0.0, 0.0]]), 1)
    with pytest.raises(ValueError, match="pos"):
        knn_neighbours(torch.rand(4, 2), 1)


def test_bad_batch():
    with pytest.raises(ValueError, match="batch"):
        knn_graph(torch.rand(4, 3), 1, torch.tensor([0, 1]))


def test_bad_backend():
    assert "kdtree" in KNN_BACKENDS
    with pytest.raises(ValueError, match="`backend` must be one of"):
        knn_graph(torch.rand(4, 3), 1, backend="faiss")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU tensor")
def test_kdtree_rejects_gpu_tensors():
    with pytest.raises(ValueError, match="kdtree' needs CPU"):
        knn_graph(torch.rand(4, 3, device="cuda"), 1, backend="kdtree")
