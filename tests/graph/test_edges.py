import pytest
import torch

from equigraph.graph.edges import key_layout, nearest_mask, pack_keys, sort_keys, sort_order, unpack_keys


def test_sort_order_by_centre_neighbour_shift():
    c = torch.tensor([1, 0, 1, 1, 0])
    j = torch.tensor([0, 1, 0, 2, 1])
    s = torch.tensor([[1, 0, 0], [0, 0, -1], [-1, 0, 0], [0, 0, 0], [0, 0, 1]])
    o = sort_order(c, j, 3, s)
    assert c[o].tolist() == [0, 0, 1, 1, 1]
    assert s[o].tolist() == [[0, 0, -1], [0, 0, 1], [-1, 0, 0], [1, 0, 0], [0, 0, 0]]


def test_nearest_mask_ties_by_position_in_order():
    c = torch.tensor([0, 0, 0, 1, 1])
    d = torch.tensor([2.0, 1.0, 1.0, 5.0, 4.0])
    assert nearest_mask(c, d, 1, 2).tolist() == [False, True, False, False, True]
    assert nearest_mask(c, d, 2, 2).tolist() == [False, True, True, True, True]


def _random_edges(n, e, m, seed=0):
    g = torch.Generator().manual_seed(seed)
    c = torch.randint(0, n, (e,), generator=g)
    j = torch.randint(0, n, (e,), generator=g)
    s = torch.randint(-m, m + 1, (e, 3), generator=g)
    return c, j, s


@pytest.mark.parametrize("m", [0, 1, 3, 40])  # 40: bit-field decode instead of the table
def test_packed_keys_sort_like_sort_order(m):
    c, j, s = _random_edges(7, 300, m)  # many (centre, neighbour) ties: the shift decides
    layout = key_layout(7, m)
    key = sort_keys(pack_keys(c, j, s, layout))
    edge_index, shift = unpack_keys(key, layout, torch.float64)
    o = sort_order(c, j, 7, s)
    assert edge_index.tolist() == [j[o].tolist(), c[o].tolist()]
    assert shift.dtype == torch.float64 and torch.equal(shift.long(), s[o])


def test_packed_keys_without_shift_and_already_sorted():
    c = torch.tensor([0, 0, 1, 2])
    j = torch.tensor([1, 2, 0, 1])
    layout = key_layout(3, 0)
    key = pack_keys(c, j, None, layout)
    assert sort_keys(key) is key  # already in order: untouched
    edge_index, shift = unpack_keys(key, layout)
    assert shift is None and edge_index.tolist() == [j.tolist(), c.tolist()]


def test_key_layout_refuses_what_does_not_fit():
    assert key_layout(1 << 32, 0) is None
    assert key_layout(1 << 20, 1 << 10) is None
    assert key_layout(1 << 20, 1) == (20, 2, 1)
