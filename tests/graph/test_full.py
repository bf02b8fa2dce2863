import pytest
import torch

from equigraph.graph import full_graph


def test_unsorted_batch_and_empty_graph():
    batch = torch.tensor([2, 0, 2, 0, 2, 4])  # graphs 1 and 3 empty
    ei = full_graph(batch)
    expect = {(i, j) for i in range(6) for j in range(6) if i != j and batch[i] == batch[j]}
    assert set(zip(ei[1].tolist(), ei[0].tolist())) == expect
    assert ei.size(1) == len(expect)
    key = ei[1] * 6 + ei[0]
    assert bool((key[1:] > key[:-1]).all())


def test_loop_and_num_nodes():
    assert full_graph(num_nodes=3, loop=True).size(1) == 9
    assert full_graph(num_nodes=1).shape == (2, 0)
    assert full_graph(num_nodes=0).shape == (2, 0)
    assert torch.equal(full_graph(torch.zeros(4, dtype=torch.long)), full_graph(num_nodes=4))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(), "num_nodes"),
        (dict(num_nodes=-1), "num_nodes"),
        (dict(batch=torch.zeros(3, dtype=torch.long), num_nodes=4), "num_nodes"),
        (dict(batch=torch.tensor([0, -2])), "batch"),
        (dict(batch=torch.zeros(2, 2, dtype=torch.long)), "batch"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        full_graph(**kwargs)
