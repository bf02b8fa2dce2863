import pytest
import torch

from equigraph.nn.frames import knn_edge_index, knn_index


def _brute_force(x, k, batch, loop):
    d = torch.cdist(x.double(), x.double())
    d[batch[:, None] != batch[None, :]] = float("inf")
    if not loop:
        d.fill_diagonal_(float("inf"))
    return d.argsort(dim=1)[:, :k]


@pytest.mark.parametrize("width", [3, 8])
@pytest.mark.parametrize("loop", [True, False])
def test_matches_brute_force(width, loop):
    gen = torch.Generator().manual_seed(width)
    x = torch.randn(23, width, generator=gen)
    batch = torch.randint(0, 3, (23,), generator=gen)  # unsorted
    batch[:3] = torch.tensor([0, 1, 2])
    k = 4
    while int(torch.bincount(batch).min()) < k + 1:
        batch = torch.randint(0, 3, (23,), generator=gen)
    index = knn_index(x, k, batch, loop=loop)
    expected = _brute_force(x, k, batch, loop)
    assert index.shape == (23, k)
    assert torch.equal(index.sort(dim=1).values, expected.sort(dim=1).values)
    # nearest first
    dist = (x[index] - x.unsqueeze(1)).norm(dim=-1)
    assert (dist[:, 1:] >= dist[:, :-1] - 1e-6).all()


def test_chunks_give_the_same_graph():
    x = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
    batch = torch.arange(4).repeat_interleave(10)
    assert torch.equal(knn_index(x, 5, batch), knn_index(x, 5, batch, max_elements=1))


def test_edge_index_follows_pyg_flow():
    index = torch.tensor([[1, 2], [0, 2], [1, 0]])
    edge_index = knn_edge_index(index)
    assert edge_index[1].tolist() == [0, 0, 1, 1, 2, 2]
    assert edge_index[0].tolist() == [1, 2, 0, 2, 1, 0]


def test_empty_input():
    assert knn_index(torch.zeros(0, 3), 2).shape == (0, 2)


def test_bad_inputs():
    with pytest.raises(ValueError, match="graph 1 has 2"):
        knn_index(torch.randn(6, 3), 3, torch.tensor([0, 0, 0, 0, 1, 1]))
    with pytest.raises(ValueError, match=r"at least 4 nodes per graph \(without the node itself\)"):
        knn_index(torch.randn(3, 3), 3, loop=False)
    with pytest.raises(ValueError, match="NaN or inf"):
        knn_index(torch.tensor([[0.0, 1.0], [float("nan"), 0.0]]), 1)
    with pytest.raises(ValueError, match=r"floating-point \[N, D\] tensor"):
        knn_index(torch.zeros(3, dtype=torch.long), 1)
    with pytest.raises(ValueError, match="`k` must be"):
        knn_index(torch.zeros(3, 3), 0)
