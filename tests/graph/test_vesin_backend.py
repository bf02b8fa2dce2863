import pytest
import torch

from equigraph.graph.cutoff import CutoffRule
from equigraph.graph.edges import key_layout
from equigraph.graph.vesin_backend import vesin_keys, vesin_pairs


def test_skips_empty_graphs_and_offsets_indices():
    pos = torch.tensor([[0.0, 0, 0], [0.5, 0, 0], [9.0, 0, 0], [9.4, 0, 0]], dtype=torch.float64)
    ptr = torch.tensor([0, 2, 2, 4])
    c, j, s = vesin_pairs(pos, CutoffRule(pos, 1.0), ptr, None, None)
    assert sorted(zip(c.tolist(), j.tolist())) == [(0, 1), (1, 0), (2, 3), (3, 2)]
    assert s.shape == (4, 3) and not s.any()


def test_empty_and_device_check():
    c, j, s = vesin_pairs(torch.zeros(0, 3), CutoffRule(torch.zeros(0, 3), 1.0), torch.tensor([0, 0]), None, None)
    assert c.numel() == 0 and s.shape == (0, 3)
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="CPU"):
            pos = torch.zeros(2, 3, device="cuda")
            vesin_pairs(pos, CutoffRule(pos, 1.0), torch.tensor([0, 2]), None, None)


def _keys_to_triples(key, layout):
    from equigraph.graph.edges import unpack_keys

    ei, s = unpack_keys(key, layout, torch.long)
    return list(zip(ei[1].tolist(), ei[0].tolist(), map(tuple, s.tolist())))


def test_keys_sorted_and_equal_to_pairs_periodic():
    g = torch.Generator().manual_seed(0)
    pos = torch.rand(30, 3, generator=g, dtype=torch.float64) * 3.0
    basis = (torch.eye(3, dtype=torch.float64) * 3.0).expand(2, 3, 3)
    pbc = torch.tensor([[True, True, True], [True, False, True]])
    ptr = torch.tensor([0, 12, 30])
    layout = key_layout(30, 3)
    batch = torch.repeat_interleave(torch.arange(2), ptr[1:] - ptr[:-1])
    rule = CutoffRule(pos, 1.4, batch=batch, basis=basis, pbc=pbc)
    key = vesin_keys(pos, rule, ptr, basis, pbc, False, layout)
    assert bool((key[1:] > key[:-1]).all())
    c, j, s = vesin_pairs(pos, rule, ptr, basis, pbc)
    expect = sorted(zip(c.tolist(), j.tolist(), map(tuple, s.tolist())))
    assert _keys_to_triples(key, layout) == expect
    # a layout too narrow for the shifts found: refused, not wrapped around
    rule = CutoffRule(pos, 4.0, batch=batch, basis=basis, pbc=pbc)
    assert vesin_keys(pos, rule, ptr, basis, pbc, False, key_layout(30, 1)) is None


def test_keys_open_with_loops():
    pos = torch.tensor([[0.0, 0, 0], [0.5, 0, 0], [9.0, 0, 0]], dtype=torch.float64)
    layout = key_layout(3, 0)
    key = vesin_keys(pos, CutoffRule(pos, 1.0), torch.tensor([0, 2, 3]), None, None, True, layout)
    assert [t[:2] for t in _keys_to_triples(key, layout)] == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 2)]
