import pytest
import torch

from equigraph.graph import check_batch, check_cell_pbc, check_cutoff, check_pos, check_positive_int


def test_check_batch():
    assert check_batch(None, 3).tolist() == [0, 0, 0]
    b = check_batch(torch.tensor([2, 0, 2], dtype=torch.int32), 3)
    assert b.dtype == torch.long and b.tolist() == [2, 0, 2]
    assert check_batch(torch.zeros(0, dtype=torch.long), 0).numel() == 0
    for bad, match in [(torch.zeros(2, dtype=torch.long), "length"), (torch.tensor([0, -1, 0]), "non-negative"),
                       (torch.zeros(3), "integer"), (torch.zeros(3, 1, dtype=torch.long), "1-D"), ([0, 0, 0], "Tensor")]:
        with pytest.raises(ValueError, match=match):
            check_batch(bad, 3)


def test_check_pos_and_scalars():
    with pytest.raises(ValueError, match=r"first bad node\(s\): \[1\]"):
        check_pos(torch.tensor([[0.0, 0, 0], [float("inf"), 0, 0]]))
    with pytest.raises(ValueError, match="Tensor"):
        check_pos([[0.0, 0.0, 0.0]])
    assert check_cutoff(torch.tensor(2.0)) == 2.0
    with pytest.raises(ValueError, match="`r`"):
        check_cutoff(True)
    with pytest.raises(ValueError, match="scalar"):
        check_cutoff(torch.ones(2))
    assert check_positive_int(torch.tensor(3), "k") == 3
    assert check_positive_int(None, "k", allow_none=True) is None
    with pytest.raises(ValueError, match="`k`"):
        check_positive_int(None, "k")


def test_check_cell_pbc_broadcasts():
    cell, pbc = check_cell_pbc(torch.eye(3), [True, False, True], 4, torch.float32, "cpu")
    assert cell.shape == (4, 3, 3) and pbc.shape == (4, 3) and pbc.dtype == torch.bool
    cell, pbc = check_cell_pbc(torch.eye(3).expand(2, 3, 3), torch.tensor([1, 1, 0]), 2, torch.float64, "cpu")
    assert cell.dtype == torch.float64 and pbc[1].tolist() == [True, True, False]
    with pytest.raises(ValueError, match="pbc"):
        check_cell_pbc(torch.eye(3), torch.tensor([0.5, 1.0, 0.0]), 1, torch.float32, "cpu")
    with pytest.raises(ValueError, match="disagree"):
        check_cell_pbc(torch.eye(3).expand(2, 3, 3), torch.ones(3, 3, dtype=torch.bool), 3, torch.float32, "cpu")
