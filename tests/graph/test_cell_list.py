import pytest
import torch

import equigraph.graph.cell_list as cl
from equigraph.graph import periodic_radius_graph, radius_graph


def test_bin_cap_and_chunking_do_not_change_edges(monkeypatch):
    g = torch.Generator().manual_seed(0)
    pos = torch.rand(300, 3, generator=g, dtype=torch.float64) * 6
    cell = torch.tensor([[6.0, 0, 0], [1.0, 6.0, 0], [0.5, 0.2, 6.0]], dtype=torch.float64)
    pbc = torch.tensor([True, False, True])
    expect = periodic_radius_graph(pos, 1.3, cell, pbc, backend="brute")
    expect_open = radius_graph(pos, 1.3, backend="brute")
    for sub, cap, rows, pairs in [(1, 2.0, 1 << 20, 1 << 22), (3, 0.01, 37, 101)]:
        monkeypatch.setattr(cl, "SUBDIVISION", sub)
        monkeypatch.setattr(cl, "MAX_BINS_PER_ATOM", cap)
        monkeypatch.setattr(cl, "ROW_CHUNK", rows)
        monkeypatch.setattr(cl, "PAIR_CHUNK", pairs)
        got = periodic_radius_graph(pos, 1.3, cell, pbc, backend="cell_list")
        assert torch.equal(got[0], expect[0]) and torch.equal(got[1], expect[1])
        assert torch.equal(radius_graph(pos, 1.3, backend="cell_list"), expect_open)


def test_all_points_coincide():
    pos = torch.ones(5, 3)
    # a zero-width grid still bins: repeated points on purpose (point clouds), so no
    # coincidence check here; with the default tolerance they are refused
    assert radius_graph(pos, 0.1, backend="cell_list", min_distance=0).size(1) == 20
    with pytest.raises(ValueError, match="atoms 0 and 1 coincide"):
        radius_graph(pos, 0.1, backend="cell_list")
