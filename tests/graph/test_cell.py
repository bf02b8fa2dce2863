import pytest
import torch

from equigraph.graph.cell import complete_basis, plane_spacings, wrap_positions


def test_complete_basis_fills_orthonormal_directions():
    cell = torch.tensor([[[2.0, 0.5, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
                         [[2.0, 0.0, 0.0], [1.0, 3.0, 0.0], [9.0, 9.0, 9.0]],
                         [[0.0, 0.0, 0.0]] * 3])
    pbc = torch.tensor([[True, False, False], [True, True, False], [False, False, False]])
    basis = complete_basis(cell, pbc)
    assert torch.allclose(basis[pbc], cell[pbc].double())
    fill = basis[~pbc]
    assert torch.allclose(fill.norm(dim=1), torch.ones(fill.size(0), dtype=torch.float64))
    for g in range(3):
        p, q = basis[g][pbc[g]], basis[g][~pbc[g]]
        assert torch.allclose(p @ q.T, torch.zeros(p.size(0), q.size(0), dtype=torch.float64), atol=1e-12)
    assert (torch.linalg.det(basis).abs() > 0).all()


def test_singular_periodic_cell_raises():
    with pytest.raises(ValueError, match="singular"):
        complete_basis(torch.tensor([[[1.0, 0, 0], [2.0, 0, 0], [0, 0, 1]]]), torch.tensor([[True, True, True]]))


def test_plane_spacings_and_wrap():
    basis = torch.tensor([[[2.0, 0, 0], [1.0, 2.0, 0], [0, 0, 3.0]]], dtype=torch.float64)
    assert torch.allclose(plane_spacings(basis), torch.tensor([[4.0 / 5**0.5, 2.0, 3.0]], dtype=torch.float64))
    pos = torch.tensor([[-0.5, 5.0, 7.0], [0.1, 0.1, 0.1]], dtype=torch.float64)
    pbc = torch.tensor([[True, True, False]])
    posw, frac, off = wrap_positions(pos, torch.zeros(2, dtype=torch.long), basis, pbc)
    assert torch.allclose(pos - off @ basis[0], posw)
    assert bool(((frac[:, :2] >= 0) & (frac[:, :2] < 1)).all())
    assert off[:, 2].eq(0).all() and off[0].tolist()[:2] == [-2.0, 2.0]
