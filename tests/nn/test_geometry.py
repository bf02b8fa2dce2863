import pytest
import torch

from equigraph.nn import edge_length_and_unit, edge_vec, safe_norm, safe_normalize
from equigraph.nn.geometry import check_edge_vec_inputs, edge_vec_unchecked


def _tol(dtype):
    return 1e-5 if dtype == torch.float32 else 1e-12


def test_edge_vec_points_from_centre_to_neighbour(dtype):
    pos = torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]])
    edge_index = torch.tensor([[1, 0, 2], [0, 1, 1]])  # row 0 neighbour j, row 1 centre i
    vec = edge_vec(pos, edge_index)
    assert vec.dtype == dtype
    expected = torch.stack([pos[1] - pos[0], pos[0] - pos[1], pos[2] - pos[1]])
    torch.testing.assert_close(vec, expected)


@pytest.mark.parametrize("cell_shape", [(3, 3), (1, 3, 3)])
def test_edge_vec_shift_single_cell(dtype, cell_shape):
    pos = torch.tensor([[0.1, 0.2, 0.3], [0.9, 0.1, 0.0]])
    cell = torch.tensor([[2.0, 0.0, 0.0], [0.5, 3.0, 0.0], [0.2, 0.3, 4.0]])
    edge_index = torch.tensor([[1, 0], [0, 1]])
    shift = torch.tensor([[-1.0, 0.0, 1.0], [1.0, 0.0, -1.0]])
    vec = edge_vec(pos, edge_index, shift, cell.reshape(cell_shape))
    expected = pos[[1, 0]] - pos[[0, 1]] + shift @ cell
    torch.testing.assert_close(vec, expected)
    # opposite shifts on the reversed edge give the opposite vector
    torch.testing.assert_close(vec[0], -vec[1])


def test_edge_vec_uses_the_cell_of_the_centres_graph_with_unsorted_batch(dtype):
    g = torch.Generator().manual_seed(0)
    pos = torch.randn(5, 3, generator=g)
    batch = torch.tensor([1, 0, 1, 0, 1])  # deliberately unsorted
    cell = torch.stack([torch.eye(3) * 3.0, torch.tensor([[4.0, 0.0, 0.0], [1.0, 5.0, 0.0], [0.0, 1.0, 6.0]])])
    edge_index = torch.tensor([[2, 0, 3, 4], [0, 2, 1, 2]])
    shift = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, -1.0]])
    vec = edge_vec(pos, edge_index, shift, cell, batch)
    for e in range(edge_index.size(1)):
        j, i = edge_index[:, e]
        torch.testing.assert_close(vec[e], pos[j] - pos[i] + shift[e] @ cell[batch[i]])


def test_edge_vec_accepts_integer_shift(dtype):
    pos = torch.zeros(2, 3)
    vec = edge_vec(pos, torch.tensor([[1], [0]]), torch.tensor([[1, 0, 0]]), torch.eye(3) * 2)
    assert vec.dtype == dtype
    torch.testing.assert_close(vec, torch.tensor([[2.0, 0.0, 0.0]]))


def test_edge_vec_empty_edges(dtype):
    vec = edge_vec(torch.zeros(3, 3), torch.zeros(2, 0, dtype=torch.long))
    assert vec.shape == (0, 3)


def test_edge_vec_gradcheck_pos_and_cell():
    g = torch.Generator().manual_seed(1)
    pos = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    cell = (torch.eye(3, dtype=torch.float64) * 3 + 0.1 * torch.randn(3, 3, generator=g, dtype=torch.float64))
    cell = cell.unsqueeze(0).requires_grad_()
    edge_index = torch.tensor([[1, 2, 3, 0], [0, 0, 1, 3]])
    shift = torch.tensor([[0.0, 1.0, 0.0], [1.0, -1.0, 0.0], [0.0, 0.0, 0.0], [-1.0, 0.0, 1.0]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda p, c: edge_vec(p, edge_index, shift, c), (pos, cell))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(pos=torch.tensor([[0.0, float("nan"), 0.0], [1.0, 0.0, 0.0]])), "NaN or inf"),
        (dict(pos=torch.tensor([[0.0, float("inf"), 0.0], [1.0, 0.0, 0.0]])), "NaN or inf"),
        (dict(pos=torch.zeros(2, 2)), r"\[N, 3\]"),
        (dict(pos=torch.zeros(2, 3, dtype=torch.long)), "floating-point"),
        (dict(edge_index=torch.tensor([[2], [0]])), "refers to node 2"),
        (dict(edge_index=torch.tensor([[-1], [0]])), "refers to node -1"),
        (dict(edge_index=torch.tensor([1, 0])), r"\[2, E\]"),
        (dict(edge_index=torch.tensor([[1.0], [0.0]])), "integer"),
        (dict(shift=torch.zeros(1, 3)), "without `cell`"),
        (dict(shift=torch.zeros(2, 3), cell=torch.eye(3)), r"\[E, 3\]"),
        (dict(shift=torch.zeros(1, 3), cell=torch.eye(4)), "`cell` must be"),
        (dict(shift=torch.zeros(1, 3), cell=torch.full((3, 3), float("nan"))), "`cell` contains NaN"),
        (dict(shift=torch.zeros(1, 3), cell=torch.eye(3).repeat(2, 1, 1)), "no `batch`"),
        (dict(shift=torch.zeros(1, 3), cell=torch.eye(3).repeat(2, 1, 1), batch=torch.tensor([0])), "one entry per node"),
        (dict(shift=torch.zeros(1, 3), cell=torch.eye(3).repeat(2, 1, 1), batch=torch.tensor([0, 2])), "outside the 2 cells"),
    ],
)
def test_edge_vec_rejects_bad_input(kwargs, match):
    args = dict(pos=torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]), edge_index=torch.tensor([[1], [0]]))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        edge_vec(**args)


def test_safe_norm_matches_norm_away_from_zero(dtype):
    v = torch.randn(10, 3, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(safe_norm(v), torch.linalg.norm(v, dim=-1))
    assert safe_norm(v, keepdim=True).shape == (10, 1)
    torch.testing.assert_close(safe_norm(v.T, dim=0), torch.linalg.norm(v, dim=-1))


@pytest.mark.parametrize("fn", [safe_norm, safe_normalize, lambda v: torch.cat([t.reshape(-1) for t in edge_length_and_unit(v)])])
def test_zero_length_is_finite_with_zero_gradient(dtype, fn):
    v = torch.tensor([[0.0, 0.0, 0.0], [1e-30, 0.0, 0.0], [0.0, 3.0, 4.0]], requires_grad=True)
    out = fn(v)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert torch.isfinite(v.grad).all()
    assert (v.grad[:2] == 0).all()
    # the naive formula is NaN here: the reason these helpers exist
    w = torch.zeros(1, 3, requires_grad=True)
    (w / w.square().sum(-1, keepdim=True).sqrt()).sum().backward()
    assert torch.isnan(w.grad).all()


def test_safe_normalize_unit_length(dtype):
    v = torch.randn(7, 3, generator=torch.Generator().manual_seed(3)) * 5
    u = safe_normalize(v)
    torch.testing.assert_close(u.norm(dim=-1), torch.ones(7))
    torch.testing.assert_close(u * v.norm(dim=-1, keepdim=True), v)


def test_edge_length_and_unit(dtype):
    v = torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, 0.0], [3.0, 4.0, 0.0]])
    length, unit = edge_length_and_unit(v)
    torch.testing.assert_close(length, torch.tensor([2.0, 0.0, 5.0]))
    torch.testing.assert_close(unit, torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.6, 0.8, 0.0]]))


def test_safe_gradcheck():
    v = torch.randn(6, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(safe_norm, (v,))
    assert torch.autograd.gradcheck(safe_normalize, (v,))


def test_edge_vec_unchecked_equals_edge_vec(dtype):
    g = torch.Generator().manual_seed(3)
    pos = torch.randn(5, 3, generator=g).to(dtype)
    edge_index = torch.tensor([[1, 2, 3, 4, 0], [0, 0, 1, 3, 4]])
    shift = torch.tensor([[0, 1, 0], [1, -1, 0], [0, 0, 0], [-1, 0, 1], [0, 0, -1]])
    cells = (torch.eye(3) * 3 + 0.1 * torch.randn(2, 3, 3, generator=g)).to(dtype)
    batch = torch.tensor([0, 0, 1, 1, 1])
    for args in [(), (shift, cells[0]), (shift, cells[:1]), (shift, cells, batch)]:
        torch.testing.assert_close(edge_vec_unchecked(pos, edge_index, *args), edge_vec(pos, edge_index, *args),
                                   rtol=0, atol=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(pos=torch.tensor([[0.0, float("nan"), 0.0], [1.0, 0.0, 0.0]])), "`pos` contains NaN"),
        (dict(edge_index=torch.tensor([[2], [0]])), "refers to node 2"),
        (dict(shift=torch.zeros(1, 3), cell=torch.full((3, 3), float("inf"))), "`cell` contains NaN"),
        (dict(shift=torch.zeros(1, 3), cell=torch.eye(3).repeat(2, 1, 1), batch=torch.tensor([0, 2])), "outside"),
    ],
)
def test_check_edge_vec_inputs_raises_what_edge_vec_raises(kwargs, match):
    args = dict(pos=torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]), edge_index=torch.tensor([[1], [0]]))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        check_edge_vec_inputs(**args)
    args = dict(pos=torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]]), edge_index=torch.tensor([[1], [0]]))
    assert check_edge_vec_inputs(**args) is None


def test_edge_vec_compiles_without_graph_breaks():
    # The value checks read tensor data; under torch.compile they are skipped (fullgraph).
    pos = torch.randn(4, 3)
    edge_index = torch.tensor([[1, 2, 3], [0, 0, 1]])
    compiled = torch.compile(edge_vec, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(pos, edge_index), edge_vec(pos, edge_index))
