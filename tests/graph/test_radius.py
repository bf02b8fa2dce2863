import pytest
import torch

from equigraph.graph import radius_graph
from graph_reference import capped, open_pairs

BACKENDS = ["brute", "cell_list", "vesin", "auto"]


def _pairs(edge_index):
    return set(zip(edge_index[1].tolist(), edge_index[0].tolist()))


def _assert_sorted(edge_index, n):
    key = edge_index[1] * n + edge_index[0]
    assert bool((key[1:] > key[:-1]).all()), "edges must be sorted by centre then neighbour"


@pytest.fixture
def cloud():
    g = torch.Generator().manual_seed(0)
    pos = torch.rand(80, 3, generator=g, dtype=torch.float64) * 3.0
    # unsorted, with graph 2 empty
    batch = torch.tensor([0, 1, 3])[torch.randint(0, 3, (80,), generator=g)]
    return pos, batch


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_reference_unsorted_batch(cloud, backend, dtype):
    pos, batch = cloud
    ei = radius_graph(pos.to(dtype), 1.0, batch, backend=backend)
    assert ei.dtype == torch.long and ei.shape[0] == 2
    assert _pairs(ei) == open_pairs(pos, 1.0, batch)
    assert bool((batch[ei[0]] == batch[ei[1]]).all())
    _assert_sorted(ei, pos.size(0))


@pytest.mark.parametrize("backend", BACKENDS)
def test_loop(cloud, backend):
    pos, batch = cloud
    ei = radius_graph(pos, 0.8, batch, loop=True, backend=backend)
    assert _pairs(ei) == open_pairs(pos, 0.8, batch, loop=True)
    _assert_sorted(ei, pos.size(0))


@pytest.mark.parametrize("backend", BACKENDS)
def test_cap_keeps_nearest(cloud, backend):
    pos, batch = cloud
    ei = radius_graph(pos, 1.2, batch, max_num_neighbors=4, backend=backend)
    assert _pairs(ei) == capped(pos, open_pairs(pos, 1.2, batch), 4)
    assert int(torch.bincount(ei[1]).max()) == 4
    _assert_sorted(ei, pos.size(0))


@pytest.mark.parametrize("backend", BACKENDS)
def test_cap_ties_broken_by_index(backend):
    # a centre with six neighbours at exactly the same distance
    pos = torch.tensor([[0.0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])
    perm = torch.tensor([3, 6, 0, 2, 5, 1, 4])
    ei = radius_graph(pos[perm], 1.05, max_num_neighbors=2, backend=backend)
    centre = int((perm == 0).nonzero())
    assert ei[0, ei[1] == centre].tolist() == [0, 1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_cap_never_drops(backend):
    # 100 atoms within a tiny ball: PyG's default cap of 32 would drop most neighbours
    pos = torch.rand(100, 3, generator=torch.Generator().manual_seed(1)) * 0.1
    ei = radius_graph(pos, 1.0, backend=backend)
    assert ei.size(1) == 100 * 99


@pytest.mark.parametrize("backend", ["brute", "cell_list", "vesin"])
def test_backends_agree_on_larger_and_sparse_systems(backend):
    g = torch.Generator().manual_seed(2)
    dense = torch.rand(900, 3, generator=g, dtype=torch.float64) * 10.0
    # two far clusters and a line: exercises the bin cap and degenerate extents
    sparse = torch.cat([torch.rand(50, 3, generator=g, dtype=torch.float64),
                        torch.rand(50, 3, generator=g, dtype=torch.float64) + 1e4,
                        torch.linspace(0, 30, 60, dtype=torch.float64)[:, None].expand(60, 3) * torch.tensor([1.0, 0, 0])])
    pos = torch.cat([dense, sparse])
    batch = torch.cat([torch.zeros(900, dtype=torch.long), torch.ones(160, dtype=torch.long)])
    expect = radius_graph(pos, 1.7, batch, backend="brute")
    assert torch.equal(radius_graph(pos, 1.7, batch, backend=backend), expect)
    assert _pairs(expect) == open_pairs(pos, 1.7, batch)


def test_both_directions_and_translation_invariance(cloud):
    pos, batch = cloud
    ei = radius_graph(pos, 1.0, batch)
    assert _pairs(ei) == {(j, i) for i, j in _pairs(ei)}
    assert torch.equal(radius_graph(pos + 1234.5, 1.0, batch), ei)


def test_empty_inputs():
    assert radius_graph(torch.zeros(0, 3), 1.0).shape == (2, 0)
    assert radius_graph(torch.zeros(1, 3), 1.0).shape == (2, 0)
    assert radius_graph(torch.zeros(1, 3), 1.0, loop=True).tolist() == [[0], [0]]
    # a graph with a single node in a batch
    pos = torch.tensor([[0.0, 0, 0], [0.5, 0, 0], [0.2, 0, 0]])
    assert _pairs(radius_graph(pos, 1.0, torch.tensor([0, 0, 1]))) == {(0, 1), (1, 0)}


def test_does_not_track_gradients():
    pos = torch.rand(10, 3, requires_grad=True)
    assert not radius_graph(pos, 0.5).requires_grad


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(pos=torch.tensor([[0.0, float("nan"), 0]])), "pos"),
        (dict(pos=torch.tensor([[0.0, float("inf"), 0]])), "pos"),
        (dict(pos=torch.zeros(4, 2)), "pos"),
        (dict(pos=torch.zeros(4, 3, dtype=torch.long)), "pos"),
        (dict(r=0.0), "`r`"),
        (dict(r=-1.0), "`r`"),
        (dict(r=float("nan")), "`r`"),
        (dict(r=float("inf")), "`r`"),
        (dict(batch=torch.zeros(3, dtype=torch.long)), "batch"),
        (dict(batch=torch.tensor([0, -1, 0, 0])), "batch"),
        (dict(batch=torch.zeros(4)), "batch"),
        (dict(max_num_neighbors=0), "max_num_neighbors"),
        (dict(max_num_neighbors=2.5), "max_num_neighbors"),
        (dict(backend="kdtree"), "backend"),
    ],
)
def test_bad_input(kwargs, match):
    args = dict(pos=torch.rand(4, 3), r=1.0)
    args.update(kwargs)
    pos, r = args.pop("pos"), args.pop("r")
    with pytest.raises(ValueError, match=match):
        radius_graph(pos, r, **args)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("backend", ["brute", "cell_list", "auto"])
def test_gpu_matches_cpu(cloud, backend):
    pos, batch = cloud
    ei = radius_graph(pos.cuda(), 1.0, batch.cuda(), backend=backend)
    assert ei.is_cuda
    assert torch.equal(ei.cpu(), radius_graph(pos, 1.0, batch, backend="brute"))
    with pytest.raises(ValueError, match="vesin"):
        radius_graph(pos.cuda(), 1.0, backend="vesin")


@pytest.mark.parametrize("backend", BACKENDS)
def test_unpackable_indices_fall_back_to_lexicographic_sort(cloud, backend, monkeypatch):
    import equigraph.graph.radius as radius

    pos, batch = cloud
    expect = radius_graph(pos, 1.0, batch, max_num_neighbors=5, backend=backend)
    monkeypatch.setattr(radius, "key_layout", lambda *args: None)
    assert torch.equal(radius_graph(pos, 1.0, batch, max_num_neighbors=5, backend=backend), expect)
