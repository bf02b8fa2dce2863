"""OC20 metrics against fairchem's evaluator definitions written out as loops."""
import pytest
import torch

from equigraph.datasets.oc20_metrics import (
    energy_forces_within_threshold,
    energy_mae,
    energy_mse,
    energy_within_threshold,
    forces_cosine,
    forces_mae,
    is2re_metrics,
    s2ef_metrics,
)


@pytest.fixture
def batch():
    gen = torch.Generator().manual_seed(0)
    natoms = [3, 5, 4, 2]
    batch = torch.repeat_interleave(torch.arange(4), torch.tensor(natoms))
    f_true = torch.randn(14, 3, generator=gen, dtype=torch.float64)
    f_pred = f_true + 0.01 * (2 * torch.rand(14, 3, generator=gen, dtype=torch.float64) - 1)
    f_pred[7, 1] += 0.2  # structure 1 fails the force threshold
    e_true = torch.randn(4, generator=gen, dtype=torch.float64)
    e_pred = e_true + torch.tensor([0.005, -0.01, 0.5, 0.019], dtype=torch.float64)  # structure 2 fails EwT
    free = torch.ones(14, dtype=torch.bool)
    free[[0, 12, 13]] = False  # structure 3 has no free atom
    return natoms, batch, e_pred, e_true, f_pred, f_true, free


def _efwt_loop(natoms, e_pred, e_true, f_pred, f_true):
    # fairchem.core.modules.evaluator.energy_force_within_threshold, on the scored atoms
    ok, start = 0, 0
    for i, n in enumerate(natoms):
        f_err = (f_pred[start:start + n] - f_true[start:start + n]).abs()
        worst = float(f_err.max()) if n else 0.0
        ok += abs(float(e_pred[i] - e_true[i])) < 0.02 and worst < 0.03
        start += n
    return ok / len(natoms)


def test_energy_metrics(batch):
    _, _, e_pred, e_true, *_ = batch
    err = (e_pred - e_true).abs()
    assert energy_mae(e_pred, e_true) == pytest.approx(float(err.mean()))
    assert energy_mse(e_pred, e_true) == pytest.approx(float(err.square().mean()))
    assert energy_within_threshold(e_pred, e_true) == 0.75
    assert energy_within_threshold(e_pred.unsqueeze(-1), e_true) == 0.75  # [G, 1] is accepted
    assert is2re_metrics(e_pred, e_true)["energy_within_threshold"] == 0.75


def test_force_metrics_on_all_and_free_atoms(batch):
    natoms, b, e_pred, e_true, f_pred, f_true, free = batch
    assert forces_mae(f_pred, f_true) == pytest.approx(float((f_pred - f_true).abs().mean()))
    assert forces_mae(f_pred, f_true, free) == pytest.approx(float((f_pred - f_true)[free].abs().mean()))
    cos = [float(torch.dot(p, t) / (p.norm() * t.norm())) for p, t in zip(f_pred[free], f_true[free])]
    assert forces_cosine(f_pred, f_true, free) == pytest.approx(sum(cos) / len(cos))
    assert forces_cosine(f_true, f_true) == pytest.approx(1.0)
    assert forces_cosine(-f_true, f_true) == pytest.approx(-1.0)


def test_efwt_matches_fairchem_loop(batch):
    natoms, b, e_pred, e_true, f_pred, f_true, free = batch
    assert energy_forces_within_threshold(e_pred, e_true, f_pred, f_true, b) == _efwt_loop(
        natoms, e_pred, e_true, f_pred, f_true) == 0.5
    # On free atoms: structure 3 (no free atom) is judged on its energy; atom 0 no longer counts.
    kept = [int(free[b == g].sum()) for g in range(4)]
    expected = _efwt_loop(kept, e_pred, e_true, f_pred[free], f_true[free])
    assert energy_forces_within_threshold(e_pred, e_true, f_pred, f_true, b, free) == expected == 0.5
    # an unsorted batch vector gives the same answer
    perm = torch.randperm(14, generator=torch.Generator().manual_seed(1))
    assert energy_forces_within_threshold(e_pred, e_true, f_pred[perm], f_true[perm], b[perm], free[perm]) == 0.5
    metrics = s2ef_metrics(e_pred, e_true, f_pred, f_true, b, free)
    assert set(metrics) == {"energy_mae", "forces_mae", "forces_cos", "energy_within_threshold",
                            "energy_forces_within_threshold"}


@pytest.mark.parametrize("call, match", [
    (lambda: energy_mae(torch.zeros(2), torch.zeros(3)), "prediction has 2 values and target 3"),
    (lambda: energy_mae(torch.tensor([float("nan")]), torch.zeros(1)), "predicted energies contain NaN"),
    (lambda: forces_mae(torch.zeros(4, 3), torch.zeros(4, 2)), r"must both be \[N, 3\]"),
    (lambda: forces_mae(torch.zeros(4, 3), torch.zeros(4, 3), torch.zeros(4, dtype=torch.bool)), "no atom is free"),
    (lambda: forces_cosine(torch.zeros(4, 3), torch.zeros(4, 3), torch.ones(3)), "free: has 3 entries for 4 atoms"),
    (lambda: energy_forces_within_threshold(torch.zeros(2), torch.zeros(2), torch.zeros(4, 3), torch.zeros(4, 3)),
     "batch: needed for 2 structures"),
    (lambda: energy_forces_within_threshold(torch.zeros(2), torch.zeros(2), torch.zeros(4, 3), torch.zeros(4, 3),
                                            torch.tensor([0, 0, 1, 2])), r"outside \[0, 2\)"),
    (lambda: energy_forces_within_threshold(torch.zeros(2), torch.zeros(2), torch.zeros(4, 3), torch.zeros(4, 3),
                                            torch.tensor([0, 1])), "batch: has 2 entries for 4 atoms"),
])
def test_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()
